//! Storage: one table of JSON records per model. Stored values are the "cache"
//! form: many2one as id or false, datetimes as naive UTC strings.

use super::*;

pub(super) type Rec = Map<String, Value>;

/// The ORM-level context of one call.
pub(super) struct Ctx<'a> {
    pub(super) uid: i64,
    pub(super) context: &'a Map<String, Value>,
}

impl Ctx<'_> {
    pub(super) fn flag(&self, key: &str) -> bool {
        self.context.get(key).is_some_and(truthy)
    }
}

#[derive(Default)]
pub(super) struct Db {
    /// Major version whose selections apply (0 or 17: 16–18).
    pub(super) version: u8,
    pub(super) tables: BTreeMap<String, BTreeMap<i64, Rec>>,
    /// Like PostgreSQL sequences, not rolled back with the data.
    pub(super) seq: BTreeMap<String, i64>,
    /// Undo log of the current RPC: (model, id, previous record), so a failing
    /// call can be rolled back without copying the tables.
    pub(super) journal: Vec<(String, i64, Option<Rec>)>,
    /// The Quality app (`quality_control`) is installed: its models exist.
    pub(super) quality: bool,
}

pub(super) fn rec(v: Value) -> Rec {
    match v {
        Value::Object(m) => m,
        _ => Rec::new(),
    }
}

impl Db {
    /// The data a fresh Odoo 17 database with mrp installed has (addons/mrp/data/mrp_data.xml).
    pub(super) fn seeded(version: u8) -> Db {
        let mut db = Db {
            version,
            ..Db::default()
        };
        db.insert_raw(
            USERS,
            json!({"name": "OdooBot", "login": "__system__", "active": false}),
        );
        db.insert_raw(
            USERS,
            json!({"name": "Gateway", "login": LOGIN, "active": true}),
        );
        db.insert_raw(
            USERS,
            json!({"name": "Operator", "login": "operator", "active": true}),
        );
        let mut types = BTreeMap::new();
        for lt in ["availability", "performance", "quality", "productive"] {
            let id = db.insert_raw(LOSS_TYPE, json!({ "loss_type": lt }));
            db.add_xmlid("mrp", &format!("category_{lt}"), LOSS_TYPE, id);
            types.insert(lt, id);
        }
        let reasons = [
            (0, "Material Availability", "availability", true),
            (1, "Equipment Failure", "availability", true),
            (2, "Setup and Adjustments", "availability", true),
            (4, "Reduced Speed", "performance", false),
            (5, "Process Defect", "quality", true),
            (6, "Reduced Yield", "quality", true),
            (7, "Fully Productive Time", "productive", false),
        ];
        for (n, name, lt, manual) in reasons {
            let r = json!({"name": name, "sequence": n, "manual": manual, "loss_id": types[lt]});
            let id = db.insert_raw(LOSS, r);
            db.add_xmlid("mrp", &format!("block_reason{n}"), LOSS, id);
        }
        // addons/maintenance/data/maintenance_data.xml
        let team = db.insert_raw(TEAM, json!({"name": "Internal Maintenance"}));
        db.add_xmlid("maintenance", "equipment_team_maintenance", TEAM, team);
        for (n, name, done) in [
            (0, "New Request", false),
            (1, "In Progress", false),
            (3, "Repaired", true),
            (4, "Scrap", true),
        ] {
            let id = db.insert_raw(STAGE, json!({"name": name, "sequence": n, "done": done}));
            db.add_xmlid("maintenance", &format!("stage_{n}"), STAGE, id);
        }
        let unit = db.insert_raw(UOM, json!({"name": "Units"}));
        db.add_xmlid("uom", "product_uom_unit", UOM, unit);
        for m in ["base", "mrp", "maintenance"] {
            db.insert_raw(MODULE, json!({"name": m, "state": "installed"}));
        }
        db
    }

    /// Install the Quality app: its module rows, test types and a team.
    pub(super) fn install_quality(&mut self) {
        self.quality = true;
        for m in ["quality", "quality_control"] {
            self.insert_raw(MODULE, json!({"name": m, "state": "installed"}));
        }
        for (t, name) in [
            ("passfail", "Pass - Fail"),
            ("measure", "Measure"),
            ("instructions", "Instructions"),
        ] {
            let id = self.insert_raw(TEST_TYPE, json!({"name": name, "technical_name": t}));
            self.add_xmlid("quality_control", &format!("test_type_{t}"), TEST_TYPE, id);
        }
        let team = self.insert_raw(QTEAM, json!({"name": "Main Quality Team"}));
        self.add_xmlid("quality", "quality_alert_team0", QTEAM, team);
    }

    /// The first record of `model`, as Odoo's "first team" defaults pick.
    fn first(&self, model: &str) -> Value {
        self.rows(model)
            .map(|(id, _)| json!(id))
            .next()
            .unwrap_or(FALSE)
    }

    /// A selection as this version has it.
    pub(super) fn selection(&self, opts: Sel) -> Sel {
        if self.version >= 19 && opts == WO_STATES {
            WO_STATES_19
        } else {
            opts
        }
    }

    pub(super) fn rows(&self, model: &str) -> impl Iterator<Item = (i64, &Rec)> {
        self.tables
            .get(model)
            .into_iter()
            .flat_map(|t| t.iter().map(|(id, r)| (*id, r)))
    }
    pub(super) fn rec(&self, model: &str, id: i64) -> Option<&Rec> {
        self.tables.get(model).and_then(|t| t.get(&id))
    }
    pub(super) fn exists(&self, model: &str, id: i64) -> bool {
        self.rec(model, id).is_some()
    }
    /// Store (or with None, delete) a record; every change to the data goes here.
    pub(super) fn put(&mut self, model: &str, id: i64, r: Option<Rec>) {
        let table = self.tables.entry(model.to_string()).or_default();
        let old = match r {
            Some(r) => table.insert(id, r),
            None => table.remove(&id),
        };
        self.journal.push((model.to_string(), id, old));
    }
    /// Undo every change made since the journal had `mark` entries.
    pub(super) fn rollback(&mut self, mark: usize) {
        while self.journal.len() > mark {
            let Some((model, id, old)) = self.journal.pop() else {
                break;
            };
            let table = self.tables.entry(model).or_default();
            match old {
                Some(r) => table.insert(id, r),
                None => table.remove(&id),
            };
        }
    }
    pub(super) fn next_id(&mut self, model: &str) -> i64 {
        let n = self.seq.entry(model.to_string()).or_insert(0);
        *n += 1;
        *n
    }
    /// Insert without any check, filling unset fields with defaults.
    pub(super) fn insert_raw(&mut self, model: &str, vals: Value) -> i64 {
        let def = model_def(model).expect("known model");
        let mut r = self.defaults(def, UID);
        r.extend(rec(vals));
        let id = self.next_id(model);
        self.put(model, id, Some(r));
        id
    }
    pub(super) fn add_xmlid(&mut self, module: &str, name: &str, model: &str, res_id: i64) {
        let r = json!({"module": module, "name": name, "model": model, "res_id": res_id});
        self.insert_raw(IMD, r);
    }
    /// (imd id, model, res_id) of `module.name`.
    pub(super) fn find_xmlid(&self, module: &str, name: &str) -> Option<(i64, String, i64)> {
        self.rows(IMD)
            .find(|(_, r)| {
                r.get("module").and_then(Value::as_str) == Some(module)
                    && r.get("name").and_then(Value::as_str) == Some(name)
            })
            .map(|(id, r)| {
                (
                    id,
                    str_of(r.get("model").unwrap_or(&FALSE)),
                    r.get("res_id").and_then(Value::as_i64).unwrap_or(0),
                )
            })
    }
    pub(super) fn xmlid_of(&self, model: &str, res_id: i64) -> Option<String> {
        self.rows(IMD)
            .find(|(_, r)| {
                r.get("model").and_then(Value::as_str) == Some(model)
                    && r.get("res_id").and_then(Value::as_i64) == Some(res_id)
            })
            .map(|(_, r)| {
                format!(
                    "{}.{}",
                    str_of(r.get("module").unwrap_or(&FALSE)),
                    str_of(r.get("name").unwrap_or(&FALSE))
                )
            })
    }

    pub(super) fn defaults(&self, def: &'static ModelDef, uid: i64) -> Rec {
        let mut r: Rec = def
            .stored()
            .map(|f| {
                let v = match f.ty {
                    Ty::Int => json!(0),
                    Ty::Float => json!(0.0),
                    _ => FALSE,
                };
                (f.name.to_string(), v)
            })
            .collect();
        r.extend(rec(match def.name {
            USERS => json!({"active": true}),
            LOSS_TYPE => json!({"loss_type": "availability"}),
            LOSS => json!({"manual": true, "sequence": 1}),
            WC => json!({"active": true, "sequence": 1}),
            WO => json!({"state": if self.version >= 19 { "ready" } else { "pending" }}),
            MO => json!({"state": "confirmed", "product_qty": 1.0}),
            PROD => json!({"date_start": now(), "user_id": uid}),
            EQUIPMENT => json!({"active": true}),
            REQUEST => json!({
                "stage_id": self.find_xmlid("maintenance", "stage_0").map_or(FALSE, |x| json!(x.2)),
                "maintenance_team_id": self.first(TEAM),
                "maintenance_type": "corrective",
                "kanban_state": "normal",
                "priority": "0",
                "request_date": now().chars().take(10).collect::<String>(),
            }),
            CHECK => json!({"team_id": self.first(QTEAM), "quality_state": "none",
                            "name": format!("QC{:05}", self.seq.get(CHECK).copied().unwrap_or(0) + 1)}),
            ALERT => json!({"team_id": self.first(QTEAM), "priority": "0",
                            "name": format!("QA{:05}", self.seq.get(ALERT).copied().unwrap_or(0) + 1)}),
            // The sequence `stock.scrap`; the scrap location is the first
            // one marked so (`_get_default_scrap_location_id`).
            SCRAP => json!({"state": "draft", "scrap_qty": 1.0,
                            "name": format!("SP/{:05}", self.seq.get(SCRAP).copied().unwrap_or(0) + 1),
                            "scrap_location_id": self.rows(LOCATION)
                                .find(|(_, r)| r.get("scrap_location").is_some_and(truthy))
                                .map_or(FALSE, |(id, _)| json!(id))}),
            _ => json!({}),
        }));
        r
    }

    /// A field's value in cache form, computing the computed fields.
    pub(super) fn get(&self, def: &'static ModelDef, id: i64, f: &F) -> Value {
        let via = |m2o: Value, model: &str, field: &str| match m2o.as_i64() {
            Some(target) => self.val(model, target, field),
            None => FALSE,
        };
        match (def.name, f.name) {
            (_, "id") => json!(id),
            (_, "display_name") => json!(self.display_name(def, id)),
            (IMD, "complete_name") => {
                json!(format!(
                    "{}.{}",
                    str_of(&self.val(IMD, id, "module")),
                    str_of(&self.val(IMD, id, "name"))
                ))
            }
            (WC, "working_state") => json!(self.working_state(id)),
            (LOSS, "loss_type") => via(self.val(LOSS, id, "loss_id"), LOSS_TYPE, "loss_type"),
            (PROD, "loss_type") => via(self.val(PROD, id, "loss_id"), LOSS, "loss_type"),
            (PROD, "duration") => json!(self.duration(id)),
            (WO, "qty_producing") => via(self.val(WO, id, "production_id"), MO, "qty_producing"),
            (WO, "production_state") => via(self.val(WO, id, "production_id"), MO, "state"),
            _ => self
                .rec(def.name, id)
                .and_then(|r| r.get(f.name))
                .cloned()
                .unwrap_or(FALSE),
        }
    }
    pub(super) fn val(&self, model: &str, id: i64, field: &str) -> Value {
        match model_def(model).and_then(|d| d.field(field).map(|f| (d, f))) {
            Some((d, f)) => self.get(d, id, f),
            None => FALSE,
        }
    }
    pub(super) fn display_name(&self, def: &'static ModelDef, id: i64) -> String {
        match def.rec_name.and_then(|n| def.field(n)) {
            Some(f) => match self.get(def, id, f) {
                Value::String(s) => s,
                v if is_false(&v) => String::new(),
                v => v.to_string(),
            },
            None => format!("{},{id}", def.name),
        }
    }
    /// The value `read` returns: many2one as `[id, "display name"]`.
    pub(super) fn read_value(
        &self,
        def: &'static ModelDef,
        id: i64,
        f: &F,
        m2o_pairs: bool,
    ) -> Value {
        let v = self.get(def, id, f);
        if let (Ty::M2o(c), Some(target), true) = (f.ty, v.as_i64(), m2o_pairs) {
            if let Some(co) = model_def(c) {
                return json!([target, self.display_name(co, target)]);
            }
        }
        v
    }

    pub(super) fn open_logs(&self, pred: impl Fn(&Rec) -> bool) -> Vec<i64> {
        self.rows(PROD)
            .filter(|(_, r)| is_false(r.get("date_end").unwrap_or(&FALSE)) && pred(r))
            .map(|(id, _)| id)
            .collect()
    }
    /// mrp.workcenter._compute_working_state: the newest open log decides.
    pub(super) fn working_state(&self, wc: i64) -> &'static str {
        let open = self
            .open_logs(|r| r.get("workcenter_id").and_then(Value::as_i64) == Some(wc))
            .into_iter()
            .max();
        match open.map(|p| self.val(PROD, p, "loss_type")) {
            None => "normal",
            Some(lt) if matches!(lt.as_str(), Some("productive" | "performance")) => "done",
            Some(_) => "blocked",
        }
    }
    pub(super) fn duration(&self, id: i64) -> f64 {
        let dt = |field| self.val(PROD, id, field).as_str().and_then(parse_dt);
        match (dt("date_start"), dt("date_end")) {
            (Some(s), Some(e)) => ((e - s).num_seconds() as f64 / 60.0 * 100.0).round() / 100.0,
            _ => 0.0,
        }
    }
    pub(super) fn check_exist(&self, model: &str, ids: &[i64]) -> Result<(), OdooError> {
        let mut missing: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|&id| !self.exists(model, id))
            .collect();
        missing.dedup();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(OdooError::missing(model, &missing))
        }
    }
}
