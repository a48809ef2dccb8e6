//! The model layer: `call` is what `execute_kw` runs, with no knowledge of the
//! wire format, so a JSON-2 endpoint could share it.

use super::*;

/// One column of a `load` call.
pub(super) enum Col {
    Xmlid,
    DbId,
    Field(&'static F),
    RefXmlid(&'static F),
    RefDbId(&'static F),
}

impl Db {
    pub(super) fn call(
        &mut self,
        ctx: &Ctx,
        model: &str,
        method: &str,
        args: &[Value],
        kwargs: &Map<String, Value>,
    ) -> Result<Option<Value>, OdooError> {
        let def = model_def(model)
            .filter(|d| self.quality || !(d.name.starts_with("quality.")))
            .ok_or_else(|| OdooError::user(format!("Object {model} doesn't exist")))?;
        // Record methods take the ids as first positional argument (api.call_kw).
        let split = |fname: &str| -> Result<(Vec<i64>, &[Value]), OdooError> {
            match args.split_first() {
                Some((ids, rest)) => Ok((ids_of(ids)?, rest)),
                None => Err(OdooError::type_error(format!(
                    "{fname}() missing 1 required positional argument: 'ids'"
                ))),
            }
        };
        let done = |v: Value| -> Result<Option<Value>, OdooError> { Ok(Some(v)) };
        match (model, method) {
            (_, "search") => {
                let a = bind(
                    "search",
                    &["domain", "offset", "limit", "order"],
                    1,
                    args,
                    kwargs,
                )?;
                done(json!(self.search(
                    ctx,
                    def,
                    opt(&a[0]),
                    opt(&a[1]),
                    opt(&a[2]),
                    opt(&a[3])
                )?))
            }
            (_, "search_count") => {
                let a = bind("search_count", &["domain", "limit"], 1, args, kwargs)?;
                done(json!(self
                    .search(ctx, def, opt(&a[0]), None, opt(&a[1]), None)?
                    .len()))
            }
            (_, "search_read") => {
                let mut kw = kwargs.clone();
                let load = kw.remove("load");
                let a = bind(
                    "search_read",
                    &["domain", "fields", "offset", "limit", "order"],
                    0,
                    args,
                    &kw,
                )?;
                let ids = self.search(ctx, def, opt(&a[0]), opt(&a[2]), opt(&a[3]), opt(&a[4]))?;
                done(json!(self.read(def, &ids, opt(&a[1]), load.as_ref())?))
            }
            (_, "read") => {
                let (ids, rest) = split("read")?;
                let a = bind("read", &["fields", "load"], 0, rest, kwargs)?;
                done(json!(self.read(def, &ids, opt(&a[0]), a[1].as_ref())?))
            }
            (QUANT, "create") => {
                let a = bind("create", &["vals_list"], 1, args, kwargs)?;
                done(self.create_quants(ctx, def, a[0].as_ref().unwrap_or(&FALSE))?)
            }
            // Returns None: no `result` over JSON-RPC, `null` over JSON-2.
            (QUANT, "action_apply_inventory") => {
                let (ids, _) = split("action_apply_inventory")?;
                self.check_exist(def.name, &ids)?;
                self.apply_inventory(ctx, &ids)?;
                Ok(None)
            }
            // True once done, or the "Insufficient Quantity" wizard.
            (SCRAP, "action_validate") => {
                let (ids, _) = split("action_validate")?;
                let [id] = ids[..] else {
                    return Err(OdooError::value_error(format!(
                        "Expected singleton: {model}{}",
                        py_tuple(&ids)
                    )));
                };
                self.check_exist(def.name, &[id])?;
                done(self.validate_scrap(ctx, id)?)
            }
            (SCRAP, "do_scrap") => {
                let (ids, _) = split("do_scrap")?;
                self.check_exist(def.name, &ids)?;
                for id in ids {
                    self.do_scrap(ctx, id)?;
                }
                done(json!(true))
            }
            (_, "create") => {
                let a = bind("create", &["vals_list"], 1, args, kwargs)?;
                done(self.create(ctx, def, a[0].as_ref().unwrap_or(&FALSE))?)
            }
            (_, "write") => {
                let (ids, rest) = split("write")?;
                let a = bind("write", &["vals"], 1, rest, kwargs)?;
                self.write(ctx, def, &ids, a[0].as_ref().unwrap_or(&FALSE))?;
                done(json!(true))
            }
            (_, "load") => {
                let a = bind("load", &["fields", "data"], 2, args, kwargs)?;
                done(self.load(
                    ctx,
                    def,
                    a[0].as_ref().unwrap_or(&FALSE),
                    a[1].as_ref().unwrap_or(&FALSE),
                )?)
            }
            // mail.thread.message_post on a record: a note in its chatter
            // (work centers, MOs and requests are mail threads).
            (MO | REQUEST | WC, "message_post") => {
                let (ids, rest) = split("message_post")?;
                let [id] = ids[..] else {
                    return Err(OdooError::value_error(format!(
                        "Expected singleton: {model}{ids:?}"
                    )));
                };
                self.check_exist(def.name, &[id])?;
                let body = kwargs
                    .get("body")
                    .or(rest.first())
                    .cloned()
                    .unwrap_or(json!(""));
                let kind = kwargs
                    .get("message_type")
                    .cloned()
                    .unwrap_or(json!("notification"));
                let mdef = model_def(MESSAGE).expect("known model");
                let m = self.create_one(
                    ctx,
                    mdef,
                    &json!({"model": model, "res_id": id, "body": body, "message_type": kind}),
                )?;
                done(json!(m))
            }
            // 18: `call_kw` checks the name (odoo/api.py) [V]; 19:
            // `get_public_method` [V]; 16/17: the raw AttributeError of
            // `getattr(type(model), name)` [unverified wording].
            _ => Err(OdooError::new(
                "builtins.AttributeError",
                match self.version {
                    v if v >= 19 => format!("The method '{model}.{method}' does not exist"),
                    18 => format!("The method '{method}' does not exist on the model '{model}'"),
                    _ => format!("type object '{model}' has no attribute '{method}'"),
                },
            )),
        }
    }

    pub(super) fn search(
        &self,
        ctx: &Ctx,
        def: &'static ModelDef,
        domain: Option<&Value>,
        offset: Option<&Value>,
        limit: Option<&Value>,
        order: Option<&Value>,
    ) -> Result<Vec<i64>, OdooError> {
        let dom = match domain {
            Some(d) => parse_domain(def, d)?,
            None => Dom::Const(true),
        };
        let order = match order {
            None | Some(Value::Bool(false)) => def.order,
            Some(Value::String(s)) if s.trim().is_empty() => def.order,
            Some(Value::String(s)) => s.as_str(),
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "order must be a string, got {other}"
                )))
            }
        };
        let order = parse_order(def, order)?;
        let offset = usize_arg("offset", offset)?.unwrap_or(0);
        // Odoo treats limit=0 like no limit.
        let limit = usize_arg("limit", limit)?.filter(|&l| l > 0);
        let limit = limit.unwrap_or(usize::MAX);
        // Archived records are hidden unless the domain asks about `active`.
        let active = def
            .field("active")
            .filter(|_| !dom.mentions("active") && ctx.context.get("active_test") != Some(&FALSE));
        let mut keyed: Vec<(Vec<Value>, i64)> = self
            .rows(def.name)
            .map(|(id, _)| id)
            .filter(|&id| {
                active.is_none_or(|a| truthy(&self.get(def, id, a))) && self.eval(def, id, &dom)
            })
            .map(|id| {
                (
                    order.iter().map(|(f, _)| self.get(def, id, f)).collect(),
                    id,
                )
            })
            .collect();
        keyed.sort_by(|(ka, ia), (kb, ib)| {
            order
                .iter()
                .zip(ka.iter().zip(kb))
                .map(|((f, desc), (a, b))| {
                    if *desc {
                        cmp_asc(a, b, f.ty).reverse()
                    } else {
                        cmp_asc(a, b, f.ty)
                    }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or_else(|| ia.cmp(ib))
        });
        Ok(keyed
            .into_iter()
            .map(|(_, id)| id)
            .skip(offset)
            .take(limit)
            .collect())
    }

    pub(super) fn eval(&self, def: &'static ModelDef, id: i64, dom: &Dom) -> bool {
        match dom {
            Dom::Const(b) => *b,
            Dom::Not(a) => !self.eval(def, id, a),
            Dom::And(a, b) => self.eval(def, id, a) && self.eval(def, id, b),
            Dom::Or(a, b) => self.eval(def, id, a) || self.eval(def, id, b),
            Dom::Leaf { field, op, value } => compare(&self.get(def, id, field), op, value),
        }
    }

    pub(super) fn read(
        &self,
        def: &'static ModelDef,
        ids: &[i64],
        fields: Option<&Value>,
        load: Option<&Value>,
    ) -> Result<Vec<Value>, OdooError> {
        let fields: Vec<&'static F> = match fields {
            None | Some(Value::Bool(false)) => vec![],
            Some(Value::Array(names)) => names
                .iter()
                .map(|n| {
                    let name = n.as_str().ok_or_else(|| {
                        OdooError::type_error(format!("field names must be strings, got {n}"))
                    })?;
                    def.field(name)
                        .ok_or_else(|| OdooError::invalid_field(def.name, name))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => {
                return Err(OdooError::type_error(format!(
                    "fields must be a list of field names, got {other}"
                )))
            }
        };
        let fields = if fields.is_empty() {
            def.fields.iter().chain([&DISPLAY_NAME]).collect()
        } else {
            fields
        };
        let pairs = load.is_none_or(|l| !is_false(l));
        self.check_exist(def.name, ids)?;
        Ok(ids
            .iter()
            .map(|&id| {
                let mut out = Map::new();
                out.insert("id".into(), json!(id));
                for f in &fields {
                    out.insert(f.name.into(), self.read_value(def, id, f, pairs));
                }
                Value::Object(out)
            })
            .collect())
    }

    /// Convert an RPC value to cache form (Field.convert_to_cache).
    pub(super) fn coerce(&self, def: &ModelDef, f: &F, v: &Value) -> Result<Value, OdooError> {
        let wrong = || {
            OdooError::value_error(format!(
                "Wrong value for {}.{}: {}",
                def.name,
                f.name,
                py_repr(v)
            ))
        };
        if is_false(v) {
            return Ok(match f.ty {
                Ty::Int => json!(0),
                Ty::Float => json!(0.0),
                _ => FALSE,
            });
        }
        Ok(match f.ty {
            Ty::Char | Ty::Text => match v {
                Value::String(s) if s.is_empty() => FALSE,
                Value::String(s) => json!(s),
                Value::Number(n) => json!(n.to_string()),
                _ => return Err(wrong()),
            },
            Ty::Bool => json!(truthy(v)),
            Ty::Int => {
                match v {
                    Value::Number(n) => json!(n
                        .as_i64()
                        .or(n.as_f64().map(|x| x.trunc() as i64))
                        .ok_or_else(wrong)?),
                    Value::String(s) => {
                        json!(s.trim().parse::<i64>().map_err(|_| OdooError::value_error(
                            format!("invalid literal for int() with base 10: '{s}'")
                        ))?)
                    }
                    Value::Bool(true) => json!(1),
                    _ => return Err(wrong()),
                }
            }
            Ty::Float => {
                match v {
                    Value::Number(n) => json!(n.as_f64().ok_or_else(wrong)?),
                    Value::String(s) => {
                        json!(s.trim().parse::<f64>().map_err(|_| OdooError::value_error(
                            format!("could not convert string to float: '{s}'")
                        ))?)
                    }
                    Value::Bool(true) => json!(1.0),
                    _ => return Err(wrong()),
                }
            }
            Ty::Sel(opts) => match v.as_str() {
                Some(s) if self.selection(opts).iter().any(|(k, _)| *k == s) => json!(s),
                _ => return Err(wrong()),
            },
            Ty::Datetime => match v {
                Value::String(s) => match parse_dt(s) {
                    Some(dt) => json!(dt.format(DT_FMT).to_string()),
                    None => {
                        return Err(OdooError::value_error(format!(
                            "time data '{s}' does not match format '{DT_FMT}'"
                        )))
                    }
                },
                _ => return Err(wrong()),
            },
            Ty::M2o(_) => match v.as_i64() {
                Some(0) => FALSE,
                Some(id) => json!(id),
                None => return Err(wrong()),
            },
        })
    }

    /// Turn a `vals` dict into typed changes; computed fields are silently ignored.
    pub(super) fn changes(
        &self,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<Vec<(&'static F, Value)>, OdooError> {
        let vals = vals
            .as_object()
            .ok_or_else(|| OdooError::type_error(format!("vals must be a dict, got {vals}")))?;
        let mut out = Vec::new();
        for (k, v) in vals {
            let f = def
                .field(k)
                .ok_or_else(|| OdooError::invalid_field(def.name, k))?;
            if !f.computed {
                out.push((f, self.coerce(def, f, v)?));
            }
        }
        Ok(out)
    }

    /// What PostgreSQL enforces: NOT NULL and foreign keys.
    pub(super) fn check_sql(&self, def: &'static ModelDef, r: &Rec) -> Result<(), OdooError> {
        for f in def.stored() {
            let v = r.get(f.name).unwrap_or(&FALSE);
            if f.required && f.ty != Ty::Bool && is_false(v) {
                return Err(OdooError::not_null(def, f));
            }
            if let (Ty::M2o(co), Some(target)) = (f.ty, v.as_i64()) {
                if !self.exists(co, target) {
                    return Err(OdooError::foreign_key(def, f));
                }
            }
        }
        Ok(())
    }

    pub(super) fn create(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<Value, OdooError> {
        match vals {
            Value::Array(list) => Ok(json!(list
                .iter()
                .map(|v| self.create_one(ctx, def, v))
                .collect::<Result<Vec<_>, _>>()?)),
            _ => Ok(json!(self.create_one(ctx, def, vals)?)),
        }
    }

    /// `stock.quant.create` (4.6): only in inventory mode and only with the
    /// inventory fields; a quant of the same product and location is
    /// reused (its count set), not duplicated.
    fn create_quants(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<Value, OdooError> {
        const ALLOWED: [&str; 8] = [
            "product_id",
            "location_id",
            "lot_id",
            "package_id",
            "owner_id",
            "inventory_quantity",
            "user_id",
            "inventory_date",
        ];
        let restricted =
            || OdooError::user("Quant's creation is restricted, you can't do this operation.");
        let one = |db: &mut Db, v: &Value| -> Result<i64, OdooError> {
            let m = v.as_object().ok_or_else(restricted)?;
            if !ctx.flag("inventory_mode") || m.keys().any(|k| !ALLOWED.contains(&k.as_str())) {
                return Err(restricted());
            }
            let (product, location) = (m.get("product_id"), m.get("location_id"));
            let existing = db.tables.get(QUANT).and_then(|t| {
                t.iter().find_map(|(id, r)| {
                    (Some(&r["product_id"]) == product && Some(&r["location_id"]) == location)
                        .then_some(*id)
                })
            });
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.insert("inventory_quantity_set".into(), json!(true));
            }
            match existing {
                Some(id) => {
                    let mut w = v.clone();
                    if let Some(o) = w.as_object_mut() {
                        o.remove("product_id");
                        o.remove("location_id");
                    }
                    db.write(ctx, def, &[id], &w)?;
                    Ok(id)
                }
                None => db.create_one(ctx, def, &v),
            }
        };
        match vals {
            Value::Array(list) => Ok(json!(list
                .iter()
                .map(|v| one(self, v))
                .collect::<Result<Vec<_>, _>>()?)),
            _ => Ok(json!(one(self, vals)?)),
        }
    }

    /// `action_apply_inventory`: the counted quantity becomes the quantity,
    /// through one inventory move for the difference.
    fn apply_inventory(&mut self, ctx: &Ctx, ids: &[i64]) -> Result<(), OdooError> {
        let mdef = model_def(MOVE).expect("known model");
        for &id in ids {
            let counted = self
                .val(QUANT, id, "inventory_quantity")
                .as_f64()
                .unwrap_or(0.0);
            let on_hand = self.val(QUANT, id, "quantity").as_f64().unwrap_or(0.0);
            let diff = counted - on_hand;
            if diff != 0.0 {
                let product = self.val(QUANT, id, "product_id");
                self.create_one(
                    ctx,
                    mdef,
                    &json!({"product_id": product, "product_uom_qty": diff.abs(), "is_inventory": true}),
                )?;
            }
            if let Some(r) = self.tables.get_mut(QUANT).and_then(|t| t.get_mut(&id)) {
                r.insert("quantity".into(), json!(counted));
                r.insert("inventory_quantity".into(), json!(0.0));
                r.insert("inventory_quantity_set".into(), json!(false));
            }
        }
        Ok(())
    }

    /// `stock.scrap.action_validate` (Odoo 17): the quantity must be
    /// positive; the parts are moved when the source location holds them,
    /// else the wizard is returned and nothing moves. A done scrap is not
    /// refused: it is moved again, as Odoo does.
    fn validate_scrap(&mut self, ctx: &Ctx, id: i64) -> Result<Value, OdooError> {
        let qty = self.val(SCRAP, id, "scrap_qty").as_f64().unwrap_or(0.0);
        if qty <= 0.0 {
            return Err(OdooError::user("You can only enter positive quantities."));
        }
        let (product, location) = (
            self.val(SCRAP, id, "product_id"),
            self.val(SCRAP, id, "location_id"),
        );
        let available: f64 = self
            .rows(QUANT)
            .filter(|(_, r)| r["product_id"] == product && r["location_id"] == location)
            .map(|(_, r)| r["quantity"].as_f64().unwrap_or(0.0))
            .sum();
        if available >= qty {
            self.do_scrap(ctx, id)?;
            return Ok(json!(true));
        }
        let name = self.display_name(
            model_def(PRODUCT).expect("known model"),
            product.as_i64().unwrap_or(0),
        );
        Ok(json!({
            "name": format!("{name}: Insufficient Quantity To Scrap"),
            "view_mode": "form",
            "res_model": "stock.warn.insufficient.qty.scrap",
            "type": "ir.actions.act_window",
            "context": {"default_product_id": product, "default_location_id": location,
                        "default_scrap_id": id, "default_quantity": qty},
            "target": "new",
        }))
    }

    /// `do_scrap`: one done move from the source to the scrap location.
    fn do_scrap(&mut self, ctx: &Ctx, id: i64) -> Result<(), OdooError> {
        let v = |db: &Db, f| db.val(SCRAP, id, f);
        let (product, location, qty) = (
            v(self, "product_id"),
            v(self, "location_id"),
            v(self, "scrap_qty").as_f64().unwrap_or(0.0),
        );
        let mdef = model_def(MOVE).expect("known model");
        let mv = self.create_one(
            ctx,
            mdef,
            &json!({"product_id": product, "location_id": location,
                    "location_dest_id": v(self, "scrap_location_id"), "product_uom_qty": qty,
                    "scrapped": true, "production_id": v(self, "production_id")}),
        )?;
        let quant = self
            .rows(QUANT)
            .find(|(_, r)| r["product_id"] == product && r["location_id"] == location)
            .map(|(q, _)| q);
        match quant {
            Some(q) => {
                let left = self.val(QUANT, q, "quantity").as_f64().unwrap_or(0.0) - qty;
                let mut r = self.rec(QUANT, q).cloned().unwrap_or_default();
                r.insert("quantity".into(), json!(left));
                self.put(QUANT, q, Some(r));
            }
            None => {
                self.insert_raw(
                    QUANT,
                    json!({"product_id": product, "location_id": location, "quantity": -qty}),
                );
            }
        }
        let mut r = self.rec(SCRAP, id).cloned().unwrap_or_default();
        r.insert("state".into(), json!("done"));
        r.insert("move_id".into(), json!(mv));
        self.put(SCRAP, id, Some(r));
        Ok(())
    }

    pub(super) fn create_one(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        vals: &Value,
    ) -> Result<i64, OdooError> {
        let changes = self.changes(def, vals)?;
        let mut r = self.defaults(def, ctx.uid);
        for (f, v) in &changes {
            r.insert(f.name.into(), v.clone());
        }
        // mrp's `_compute_location_id`: a scrap of an MO not done takes
        // its components location, of a done one its finished products'.
        if def.name == SCRAP && r.get("location_id").is_none_or(is_false) {
            if let Some(mo) = r.get("production_id").and_then(Value::as_i64) {
                let done = self.val(MO, mo, "state") == json!("done");
                let from = if done {
                    "location_dest_id"
                } else {
                    "location_src_id"
                };
                r.insert("location_id".into(), self.val(MO, mo, from));
            }
        }
        self.check_sql(def, &r)?;
        let id = self.next_id(def.name);
        self.put(def.name, id, Some(r));
        self.check_constraints(def, id, &changes)?;
        Ok(id)
    }

    pub(super) fn write(
        &mut self,
        ctx: &Ctx,
        def: &'static ModelDef,
        ids: &[i64],
        vals: &Value,
    ) -> Result<(), OdooError> {
        let changes = self.changes(def, vals)?;
        self.check_exist(def.name, ids)?;
        // The inverse of the WO's related qty_producing (`_set_qty_producing`).
        let producing = match (def.name, vals.get("qty_producing")) {
            (WO, Some(v)) => Some(self.coerce(def, &F_QTY, v)?),
            _ => None,
        };
        for &id in ids {
            if def.name == WO {
                self.check_wo_write(ctx, id, &changes)?;
            }
            let mut r = self.rec(def.name, id).cloned().unwrap_or_default();
            for (f, v) in &changes {
                r.insert(f.name.into(), v.clone());
            }
            self.check_sql(def, &r)?;
            self.put(def.name, id, Some(r));
            self.check_constraints(def, id, &changes)?;
            if def.name == WO {
                // mrp.workorder.write: qty_produced also sets the MO's qty_producing.
                let produced = changes
                    .iter()
                    .find(|(f, _)| f.name == "qty_produced")
                    .map(|(_, v)| v.clone());
                let to_mo = produced.or(producing.clone().filter(|v| v.as_f64() != Some(0.0)));
                if let (Some(q), Some(mo)) = (to_mo, self.val(WO, id, "production_id").as_i64()) {
                    let mut m = self.rec(MO, mo).cloned().unwrap_or_default();
                    m.insert("qty_producing".into(), q);
                    self.put(MO, mo, Some(m));
                }
            }
        }
        Ok(())
    }

    /// mrp.workorder.write's own checks (Odoo 17 wording).
    pub(super) fn check_wo_write(
        &self,
        ctx: &Ctx,
        id: i64,
        changes: &[(&'static F, Value)],
    ) -> Result<(), OdooError> {
        let old = |field| self.val(WO, id, field);
        let state = str_of(&old("state"));
        let closed = matches!(state.as_str(), "progress" | "done" | "cancel");
        for (f, v) in changes {
            let msg = match f.name {
                "production_id" if !json_eq(v, &old("production_id")) => {
                    "You cannot link this work order to another manufacturing order."
                }
                "workcenter_id" if closed && !json_eq(v, &old("workcenter_id")) => {
                    "You cannot change the workcenter of a work order that is in progress or done."
                }
                "qty_produced" if v.as_f64().unwrap_or(0.0) < 0.0 => {
                    "The quantity produced must be positive."
                }
                "qty_produced" if state == "done" && !ctx.flag("allow_qty_change") => {
                    "This production order has been closed."
                }
                _ => continue,
            };
            return Err(OdooError::user(msg));
        }
        Ok(())
    }

    /// mrp.workcenter.productivity `_check_open_time_ids`, run after the values are stored.
    pub(super) fn check_constraints(
        &self,
        def: &ModelDef,
        id: i64,
        changes: &[(&'static F, Value)],
    ) -> Result<(), OdooError> {
        if def.name == PROD && changes.iter().any(|(f, _)| f.name == "workorder_id") {
            if let Some(wo) = self.val(PROD, id, "workorder_id").as_i64() {
                let user = self.val(PROD, id, "user_id");
                if self
                    .open_logs(|r| is_wo(r, wo) && r.get("user_id") == Some(&user))
                    .len()
                    > 1
                {
                    let name = self.display_name(model_def(WO).expect("known model"), wo);
                    return Err(OdooError::validation(format!(
                        "The Workorder ({name}) cannot be started twice!"
                    )));
                }
            }
        }
        Ok(())
    }
}

pub(super) fn is_wo(r: &Rec, wo: i64) -> bool {
    r.get("workorder_id").and_then(Value::as_i64) == Some(wo)
}
