//! Public API for the tests.

use super::*;

impl FakeOdoo {
    /// Bind 127.0.0.1 on a free port and serve plain HTTP in a tokio task,
    /// as Odoo 17.
    pub async fn start() -> FakeOdoo {
        Self::start_version(17).await
    }

    /// As [`FakeOdoo::start`], as Odoo `version`, 16 to 19. What differs
    /// (shared/odoo-api.md section 0): 19 serves JSON-2 and `/web/version`,
    /// its JSON-RPC errors carry code 0 (200 before) and its work orders
    /// have the states blocked/ready/progress/done/cancel (16–18:
    /// pending/waiting/ready/progress/done/cancel); API keys can expire from
    /// 18 on ([`FakeOdoo::expire_api_key`]); an unknown method's message
    /// is each version's own.
    pub async fn start_version(version: u8) -> FakeOdoo {
        Self::start_with(version, None).await
    }

    /// As [`FakeOdoo::start_version`], serving HTTPS with `tls` (see
    /// [`super::TestPki::acceptor`]).
    pub async fn start_tls(version: u8, tls: tokio_rustls::TlsAcceptor) -> FakeOdoo {
        Self::start_with(version, Some(tls)).await
    }

    async fn start_with(version: u8, tls: Option<tokio_rustls::TlsAcceptor>) -> FakeOdoo {
        assert!(
            (16..=19).contains(&version),
            "FakeOdoo: version {version} is not one of 16, 17, 18, 19"
        );
        let listener = listen_on(0).expect("FakeOdoo: cannot bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("FakeOdoo: no local address")
            .port();
        let state = Arc::new(Mutex::new(State {
            db: Db::seeded(version),
            fault: Fault::None,
            calls: Vec::new(),
            version,
            retry_after: None,
            key_expired: false,
        }));
        let running = serve(state.clone(), listener, tls.clone());
        FakeOdoo {
            state,
            port,
            server: Arc::new(tokio::sync::Mutex::new(Some(running))),
            tls,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close the listener and all open connections. Data is kept.
    pub async fn stop(&self) {
        if let Some(running) = self.server.lock().await.take() {
            let _ = running.shutdown.send(());
            let _ = running.task.await;
        }
    }

    /// Listen on the same port again (retrying for ~5 s), with the same data.
    pub async fn resume(&self) {
        let mut server = self.server.lock().await;
        if server.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match listen_on(self.port) {
                Ok(l) => break l,
                Err(e) if Instant::now() >= deadline => {
                    panic!("FakeOdoo: cannot bind 127.0.0.1:{} again: {e}", self.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        *server = Some(serve(self.state.clone(), listener, self.tls.clone()));
    }

    /// A storable product with its internal reference (`default_code`).
    pub fn add_product(&self, name: &str, default_code: &str) -> i64 {
        lock(&self.state)
            .db
            .insert_raw(PRODUCT, json!({"name": name, "default_code": default_code}))
    }

    /// A stock location by its full name (`WH/Stock/Shelf 1`).
    pub fn add_location(&self, complete_name: &str) -> i64 {
        let name = complete_name.rsplit('/').next().unwrap_or(complete_name);
        lock(&self.state).db.insert_raw(
            LOCATION,
            json!({"name": name, "complete_name": complete_name, "barcode": false}),
        )
    }

    /// The on-hand quantity of a product at a location (its quant), and how
    /// many quants it has (Odoo keeps one per product and location).
    pub fn on_hand(&self, product: i64, location: i64) -> (f64, usize) {
        let st = lock(&self.state);
        let quants: Vec<f64> = st
            .db
            .tables
            .get(QUANT)
            .into_iter()
            .flat_map(|t| t.values())
            .filter(|r| r["product_id"] == json!(product) && r["location_id"] == json!(location))
            .map(|r| r["quantity"].as_f64().unwrap_or(0.0))
            .collect();
        (quants.iter().sum(), quants.len())
    }

    /// A scrap location (`scrap_location`), as stock's data has one.
    pub fn add_scrap_location(&self, complete_name: &str) -> i64 {
        let name = complete_name.rsplit('/').next().unwrap_or(complete_name);
        lock(&self.state).db.insert_raw(
            LOCATION,
            json!({"name": name, "complete_name": complete_name, "scrap_location": true}),
        )
    }

    /// Give an MO its product (in Units) and its locations (both `location`).
    pub fn set_production_product(&self, mo: i64, product: i64, location: i64) {
        let mut st = lock(&self.state);
        let (_, _, unit) = st
            .db
            .find_xmlid("uom", "product_uom_unit")
            .expect("seeded unit");
        for (field, v) in [
            ("product_id", product),
            ("product_uom_id", unit),
            ("location_src_id", location),
            ("location_dest_id", location),
        ] {
            Self::set_raw(&mut st.db, MO, mo, field, json!(v));
        }
    }

    /// Put `quantity` of a product at a location (its quant), as receipts would.
    pub fn set_on_hand(&self, product: i64, location: i64, quantity: f64) {
        lock(&self.state).db.insert_raw(
            QUANT,
            json!({"product_id": product, "location_id": location, "quantity": quantity}),
        );
    }

    /// Every stock.scrap, by ascending id, with how many moves it made.
    pub fn scraps(&self) -> Vec<ScrapRecord> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rows(SCRAP)
            .map(|(id, _)| ScrapRecord {
                id,
                product_id: db.val(SCRAP, id, "product_id").as_i64().unwrap_or(0),
                scrap_qty: db.val(SCRAP, id, "scrap_qty").as_f64().unwrap_or(0.0),
                state: str_of(&db.val(SCRAP, id, "state")),
                production_id: db.val(SCRAP, id, "production_id").as_i64(),
                workorder_id: db.val(SCRAP, id, "workorder_id").as_i64(),
                location_id: db.val(SCRAP, id, "location_id").as_i64().unwrap_or(0),
                origin: str_of(&db.val(SCRAP, id, "origin")),
            })
            .collect()
    }

    /// Moves to scrap made (one per validated scrap).
    pub fn scrap_moves(&self) -> usize {
        lock(&self.state)
            .db
            .rows(MOVE)
            .filter(|(_, r)| r.get("scrapped").is_some_and(truthy))
            .count()
    }

    /// Inventory moves made by applied counts (one per count that differed).
    pub fn inventory_moves(&self) -> usize {
        lock(&self.state).db.tables.get(MOVE).map_or(0, |t| t.len())
    }

    /// The API key's `expiration_date` passes (or, with `false`, the user
    /// extends it). Keys expire from Odoo 18.0 on (PR #178558); before that
    /// they have no expiration, so this panics for 16 and 17.
    pub fn expire_api_key(&self, expired: bool) {
        let mut st = lock(&self.state);
        assert!(
            st.version >= 18,
            "FakeOdoo: API keys of Odoo {} do not expire",
            st.version
        );
        st.key_expired = expired;
    }

    pub fn set_fault(&self, fault: Fault) {
        lock(&self.state).fault = fault;
    }

    pub fn add_workcenter(&self, code: &str, name: &str) -> i64 {
        let code = if code.is_empty() { FALSE } else { json!(code) };
        lock(&self.state)
            .db
            .insert_raw(WC, json!({"name": name, "code": code}))
    }

    /// A manufacturing order (state confirmed) of `product_qty` units.
    pub fn add_production(&self, name: &str, product_qty: f64) -> i64 {
        lock(&self.state)
            .db
            .insert_raw(MO, json!({"name": name, "product_qty": product_qty}))
    }

    /// A work order with its own MO ("MO/" + name, 100 units).
    /// state: pending/waiting/ready/progress/done/cancel (17),
    /// blocked/ready/progress/done/cancel (19)
    pub fn add_workorder(&self, workcenter_id: i64, name: &str, state: &str) -> i64 {
        let mo = self.add_production(&format!("MO/{name}"), 100.0);
        self.add_workorder_for(mo, workcenter_id, name, state)
    }

    /// A work order of an existing MO. Started now when its state is
    /// progress or done (finished now when done), as button_start/finish do.
    pub fn add_workorder_for(&self, mo: i64, workcenter_id: i64, name: &str, state: &str) -> i64 {
        let mut st = lock(&self.state);
        assert!(
            st.db.selection(WO_STATES).iter().any(|(s, _)| *s == state),
            "FakeOdoo: bad work order state {state:?} for {}",
            st.version
        );
        assert!(
            st.db.exists(WC, workcenter_id),
            "FakeOdoo: no work center {workcenter_id}"
        );
        assert!(
            st.db.exists(MO, mo),
            "FakeOdoo: no manufacturing order {mo}"
        );
        let started = matches!(state, "progress" | "done");
        let id = st.db.insert_raw(
            WO,
            json!({"name": name, "workcenter_id": workcenter_id, "production_id": mo, "state": state,
                   "date_start": if started { json!(now()) } else { FALSE },
                   "date_finished": if state == "done" { json!(now()) } else { FALSE }}),
        );
        if started {
            Self::set_raw(&mut st.db, MO, mo, "state", json!("progress"));
        }
        id
    }

    pub(super) fn set_raw(db: &mut Db, model: &str, id: i64, field: &str, v: Value) {
        if let Some(r) = db.tables.get_mut(model).and_then(|t| t.get_mut(&id)) {
            r.insert(field.into(), v);
        }
    }

    /// Set a work order's state as Odoo's buttons would: starting sets
    /// `date_start`, finishing sets `date_finished` (when not yet set).
    pub fn set_workorder_state(&self, id: i64, state: &str) {
        let mut st = lock(&self.state);
        assert!(
            st.db.selection(WO_STATES).iter().any(|(s, _)| *s == state),
            "FakeOdoo: bad work order state {state:?} for {}",
            st.version
        );
        assert!(st.db.exists(WO, id), "FakeOdoo: no work order {id}");
        Self::set_raw(&mut st.db, WO, id, "state", json!(state));
        for (field, when) in [
            ("date_start", ["progress", "done"]),
            ("date_finished", ["done", "done"]),
        ] {
            if when.contains(&state) && is_false(&st.db.val(WO, id, field)) {
                Self::set_raw(&mut st.db, WO, id, field, json!(now()));
            }
        }
    }

    /// Set a work order's start and end ("YYYY-MM-DD HH:MM:SS" UTC or None).
    pub fn set_workorder_dates(&self, id: i64, start: Option<&str>, finished: Option<&str>) {
        let mut st = lock(&self.state);
        assert!(st.db.exists(WO, id), "FakeOdoo: no work order {id}");
        let v = |d: Option<&str>| d.map_or(FALSE, |d| json!(d));
        Self::set_raw(&mut st.db, WO, id, "date_start", v(start));
        Self::set_raw(&mut st.db, WO, id, "date_finished", v(finished));
    }

    /// What an operator typing a quantity on the MO form does.
    pub fn set_production_qty(&self, mo: i64, qty_producing: f64) {
        let mut st = lock(&self.state);
        assert!(
            st.db.exists(MO, mo),
            "FakeOdoo: no manufacturing order {mo}"
        );
        Self::set_raw(&mut st.db, MO, mo, "qty_producing", json!(qty_producing));
    }

    /// What an operator recording a quantity on the work order does (the
    /// same link as the API: the MO follows).
    pub fn set_workorder_qty(&self, wo: i64, qty_produced: f64) {
        let mut st = lock(&self.state);
        assert!(st.db.exists(WO, wo), "FakeOdoo: no work order {wo}");
        Self::set_raw(&mut st.db, WO, wo, "qty_produced", json!(qty_produced));
        if let Some(mo) = st.db.val(WO, wo, "production_id").as_i64() {
            Self::set_raw(&mut st.db, MO, mo, "qty_producing", json!(qty_produced));
        }
    }

    pub fn set_production_state(&self, mo: i64, state: &str) {
        assert!(
            MO_STATES.iter().any(|(s, _)| *s == state),
            "FakeOdoo: bad MO state {state:?}"
        );
        let mut st = lock(&self.state);
        assert!(
            st.db.exists(MO, mo),
            "FakeOdoo: no manufacturing order {mo}"
        );
        Self::set_raw(&mut st.db, MO, mo, "state", json!(state));
    }

    pub fn production(&self, id: i64) -> Option<Production> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rec(MO, id)?;
        Some(Production {
            id,
            name: str_of(&db.val(MO, id, "name")),
            state: str_of(&db.val(MO, id, "state")),
            product_qty: db.val(MO, id, "product_qty").as_f64().unwrap_or(0.0),
            qty_producing: db.val(MO, id, "qty_producing").as_f64().unwrap_or(0.0),
        })
    }

    /// An operator's productive timer on a work order (open when `end` is
    /// None), as button_start creates it: loss "Fully Productive Time".
    pub fn add_timer(&self, wo: i64, start: &str, end: Option<&str>) -> i64 {
        let mut st = lock(&self.state);
        let wc = st.db.val(WO, wo, "workcenter_id");
        let (_, _, productive) = st
            .db
            .find_xmlid("mrp", "block_reason7")
            .expect("seeded loss");
        st.db.insert_raw(
            PROD,
            json!({"workcenter_id": wc, "workorder_id": wo, "loss_id": productive,
                   "date_start": start, "date_end": end.map_or(FALSE, |e| json!(e)),
                   "user_id": OPERATOR_UID, "description": "Time Tracking: Operator"}),
        )
    }

    /// mrp.workcenter.working_state: normal, blocked or done ("In Progress").
    pub fn working_state(&self, wc: i64) -> String {
        lock(&self.state).db.working_state(wc).to_string()
    }

    pub fn workorder(&self, id: i64) -> Option<WorkOrder> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rec(WO, id)?;
        let opt = |v: Value| v.as_str().map(str::to_string);
        Some(WorkOrder {
            id,
            name: str_of(&db.val(WO, id, "name")),
            workcenter_id: db.val(WO, id, "workcenter_id").as_i64().unwrap_or(0),
            production_id: db.val(WO, id, "production_id").as_i64().unwrap_or(0),
            state: str_of(&db.val(WO, id, "state")),
            qty_produced: db.val(WO, id, "qty_produced").as_f64().unwrap_or(0.0),
            qty_producing: db.val(WO, id, "qty_producing").as_f64().unwrap_or(0.0),
            date_start: opt(db.val(WO, id, "date_start")),
            date_finished: opt(db.val(WO, id, "date_finished")),
        })
    }

    /// All mrp.workcenter.productivity records, by ascending id.
    pub fn productivity(&self) -> Vec<Productivity> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rows(PROD)
            .map(|(id, _)| {
                let loss_id = db.val(PROD, id, "loss_id").as_i64().unwrap_or(0);
                Productivity {
                    id,
                    workcenter_id: db.val(PROD, id, "workcenter_id").as_i64().unwrap_or(0),
                    loss_id,
                    loss_xmlid: db.xmlid_of(LOSS, loss_id),
                    date_start: str_of(&db.val(PROD, id, "date_start")),
                    date_end: db.val(PROD, id, "date_end").as_str().map(str::to_string),
                    description: str_of(&db.val(PROD, id, "description")),
                    xmlid: db.xmlid_of(PROD, id),
                    workorder_id: db.val(PROD, id, "workorder_id").as_i64(),
                    user_id: db.val(PROD, id, "user_id").as_i64().unwrap_or(0),
                    loss_type: str_of(&db.val(PROD, id, "loss_type")),
                }
            })
            .collect()
    }

    /// Every request received on /jsonrpc (and every 502 answered), in order.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.state).calls.clone()
    }

    /// A piece of equipment of the Maintenance app.
    pub fn add_equipment(&self, name: &str, serial_no: Option<&str>) -> i64 {
        lock(&self.state).db.insert_raw(
            EQUIPMENT,
            json!({"name": name, "serial_no": serial_no.map_or(FALSE, |s| json!(s))}),
        )
    }

    /// Install the Quality app (`quality_control`): its models, test types
    /// and a quality team.
    pub fn install_quality(&self) {
        lock(&self.state).db.install_quality();
    }

    /// All maintenance requests, by ascending id.
    pub fn maintenance_requests(&self) -> Vec<MaintenanceRequest> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rows(REQUEST)
            .map(|(id, _)| MaintenanceRequest {
                id,
                name: str_of(&db.val(REQUEST, id, "name")),
                equipment_id: db.val(REQUEST, id, "equipment_id").as_i64(),
                maintenance_type: str_of(&db.val(REQUEST, id, "maintenance_type")),
                stage: db
                    .val(REQUEST, id, "stage_id")
                    .as_i64()
                    .and_then(|s| db.xmlid_of(STAGE, s))
                    .map(|x| x.trim_start_matches("maintenance.").to_string()),
                description: str_of(&db.val(REQUEST, id, "description")),
                xmlid: db.xmlid_of(REQUEST, id),
            })
            .collect()
    }

    fn quality_records(&self, model: &str) -> Vec<QualityRecord> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rows(model)
            .map(|(id, _)| QualityRecord {
                id,
                title: str_of(&db.val(model, id, "title")),
                quality_state: str_of(&db.val(model, id, "quality_state")),
                measure: db.val(model, id, "measure").as_f64().unwrap_or(0.0),
                check_id: db.val(model, id, "check_id").as_i64(),
                text: str_of(&db.val(
                    model,
                    id,
                    if model == CHECK {
                        "note"
                    } else {
                        "description"
                    },
                )),
                xmlid: db.xmlid_of(model, id),
            })
            .collect()
    }

    /// All quality checks, by ascending id.
    pub fn quality_checks(&self) -> Vec<QualityRecord> {
        self.quality_records(CHECK)
    }

    /// All quality alerts, by ascending id.
    pub fn quality_alerts(&self) -> Vec<QualityRecord> {
        self.quality_records(ALERT)
    }

    /// The chatter messages posted on a manufacturing order, oldest first.
    pub fn production_notes(&self, mo: i64) -> Vec<String> {
        self.notes(MO, mo)
    }

    /// The chatter messages posted on a work center, oldest first.
    pub fn workcenter_notes(&self, wc: i64) -> Vec<String> {
        self.notes(WC, wc)
    }

    fn notes(&self, model: &str, res_id: i64) -> Vec<String> {
        let st = lock(&self.state);
        let db = &st.db;
        db.rows(MESSAGE)
            .filter(|(id, _)| {
                db.val(MESSAGE, *id, "model") == json!(model)
                    && db.val(MESSAGE, *id, "res_id").as_i64() == Some(res_id)
            })
            .map(|(id, _)| str_of(&db.val(MESSAGE, id, "body")))
            .collect()
    }
}
