//! Schema: the models and fields the gateway touches, with Odoo 17's labels
//! (they appear in error messages).

pub(super) const USERS: &str = "res.users";
pub(super) const IMD: &str = "ir.model.data";
pub(super) const LOSS_TYPE: &str = "mrp.workcenter.productivity.loss.type";
pub(super) const LOSS: &str = "mrp.workcenter.productivity.loss";
pub(super) const WC: &str = "mrp.workcenter";
pub(super) const WO: &str = "mrp.workorder";
pub(super) const PROD: &str = "mrp.workcenter.productivity";
pub(super) const MO: &str = "mrp.production";
pub(super) const EQUIPMENT: &str = "maintenance.equipment";
pub(super) const TEAM: &str = "maintenance.team";
pub(super) const STAGE: &str = "maintenance.stage";
pub(super) const REQUEST: &str = "maintenance.request";
pub(super) const MODULE: &str = "ir.module.module";
pub(super) const TEST_TYPE: &str = "quality.point.test_type";
pub(super) const QTEAM: &str = "quality.alert.team";
pub(super) const CHECK: &str = "quality.check";
pub(super) const ALERT: &str = "quality.alert";
pub(super) const MESSAGE: &str = "mail.message";
pub(super) const PRODUCT: &str = "product.product";
pub(super) const LOCATION: &str = "stock.location";
pub(super) const QUANT: &str = "stock.quant";
pub(super) const MOVE: &str = "stock.move";
pub(super) const UOM: &str = "uom.uom";
pub(super) const SCRAP: &str = "stock.scrap";
pub(super) const SCRAP_STATES: Sel = &[("draft", "Draft"), ("done", "Done")];

pub(super) const MAINTENANCE_TYPES: Sel =
    &[("corrective", "Corrective"), ("preventive", "Preventive")];
pub(super) const KANBAN_STATES: Sel = &[
    ("normal", "In Progress"),
    ("blocked", "Blocked"),
    ("done", "Ready for next stage"),
];
pub(super) const REQUEST_PRIORITIES: Sel = &[
    ("0", "Very Low"),
    ("1", "Low"),
    ("2", "Normal"),
    ("3", "High"),
];
pub(super) const ALERT_PRIORITIES: Sel = &[
    ("0", "Normal"),
    ("1", "Low"),
    ("2", "High"),
    ("3", "Very High"),
];
pub(super) const QUALITY_STATES: Sel = &[("none", "To do"), ("pass", "Passed"), ("fail", "Failed")];
pub(super) const MODULE_STATES: Sel = &[
    ("uninstallable", "Uninstallable"),
    ("uninstalled", "Not Installed"),
    ("installed", "Installed"),
    ("to upgrade", "To be upgraded"),
    ("to remove", "To be removed"),
    ("to install", "To be installed"),
];

pub(super) type Sel = &'static [(&'static str, &'static str)];
pub(super) const WO_STATES: Sel = &[
    ("pending", "Waiting for another WO"),
    ("waiting", "Waiting for components"),
    ("ready", "Ready"),
    ("progress", "In Progress"),
    ("done", "Finished"),
    ("cancel", "Cancelled"),
];
pub(super) const MO_STATES: Sel = &[
    ("draft", "Draft"),
    ("confirmed", "Confirmed"),
    ("progress", "In Progress"),
    ("to_close", "To Close"),
    ("done", "Done"),
    ("cancel", "Cancelled"),
];
/// 19.0's work order states (PR #194841, saas-18.3).
pub(super) const WO_STATES_19: Sel = &[
    ("blocked", "Blocked"),
    ("ready", "To Do"),
    ("progress", "In Progress"),
    ("done", "Finished"),
    ("cancel", "Cancelled"),
];
pub(super) const LOSS_TYPES: Sel = &[
    ("availability", "Availability"),
    ("performance", "Performance"),
    ("quality", "Quality"),
    ("productive", "Productive"),
];
pub(super) const WORKING_STATES: Sel = &[
    ("normal", "Normal"),
    ("blocked", "Blocked"),
    ("done", "In Progress"),
];

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Ty {
    Char,
    Text,
    Int,
    Float,
    Bool,
    Datetime,
    Sel(Sel),
    M2o(&'static str),
}

#[derive(Debug)]
pub(super) struct F {
    pub(super) name: &'static str,
    pub(super) label: &'static str,
    pub(super) ty: Ty,
    pub(super) required: bool,
    pub(super) computed: bool,
}

pub(super) const fn f(name: &'static str, label: &'static str, ty: Ty) -> F {
    F {
        name,
        label,
        ty,
        required: false,
        computed: false,
    }
}
pub(super) const fn req(name: &'static str, label: &'static str, ty: Ty) -> F {
    F {
        required: true,
        ..f(name, label, ty)
    }
}
pub(super) const fn comp(name: &'static str, label: &'static str, ty: Ty) -> F {
    F {
        computed: true,
        ..f(name, label, ty)
    }
}

pub(super) struct ModelDef {
    pub(super) name: &'static str,
    pub(super) desc: &'static str,
    pub(super) rec_name: Option<&'static str>,
    pub(super) order: &'static str,
    pub(super) fields: &'static [F],
}

pub(super) static ID_FIELD: F = comp("id", "ID", Ty::Int);
pub(super) static F_QTY: F = f("qty_producing", "Currently Produced Quantity", Ty::Float);
pub(super) static DISPLAY_NAME: F = comp("display_name", "Display Name", Ty::Char);

pub(super) static MODELS: &[ModelDef] = &[
    ModelDef {
        name: USERS,
        desc: "User",
        rec_name: Some("name"),
        order: "name, login",
        fields: &[
            req("name", "Name", Ty::Char),
            req("login", "Login", Ty::Char),
            f("active", "Active", Ty::Bool),
        ],
    },
    ModelDef {
        name: IMD,
        desc: "Model Data",
        rec_name: Some("name"),
        order: "module, model, name",
        fields: &[
            req("name", "External Identifier", Ty::Char),
            req("module", "Module", Ty::Char),
            req("model", "Model Name", Ty::Char),
            f("res_id", "Record ID", Ty::Int),
            f("noupdate", "Non Updatable", Ty::Bool),
            comp("complete_name", "Complete ID", Ty::Char),
        ],
    },
    ModelDef {
        name: LOSS_TYPE,
        desc: "MRP Workorder productivity losses",
        rec_name: Some("loss_type"),
        order: "id",
        fields: &[req("loss_type", "Category", Ty::Sel(LOSS_TYPES))],
    },
    ModelDef {
        name: LOSS,
        desc: "Workcenter Productivity Losses",
        rec_name: Some("name"),
        order: "sequence, id",
        fields: &[
            req("name", "Blocking Reason", Ty::Char),
            f("sequence", "Sequence", Ty::Int),
            f("manual", "Is a Blocking Reason", Ty::Bool),
            f("loss_id", "Category", Ty::M2o(LOSS_TYPE)),
            comp("loss_type", "Effectiveness Category", Ty::Sel(LOSS_TYPES)),
        ],
    },
    ModelDef {
        name: WC,
        desc: "Work Center",
        rec_name: Some("name"),
        order: "sequence, id",
        fields: &[
            req("name", "Work Center", Ty::Char),
            f("code", "Code", Ty::Char),
            f("active", "Active", Ty::Bool),
            f("sequence", "Sequence", Ty::Int),
            comp(
                "working_state",
                "Workcenter Status",
                Ty::Sel(WORKING_STATES),
            ),
        ],
    },
    ModelDef {
        name: WO,
        desc: "Work Order",
        rec_name: Some("name"),
        order: "id",
        fields: &[
            req("name", "Work Order", Ty::Char),
            req("workcenter_id", "Work Center", Ty::M2o(WC)),
            req("production_id", "Manufacturing Order", Ty::M2o(MO)),
            f("state", "Status", Ty::Sel(WO_STATES)),
            f("qty_produced", "Quantity", Ty::Float),
            // Related to the MO's, with an inverse that writes it back (4.3).
            comp("qty_producing", "Currently Produced Quantity", Ty::Float),
            comp("production_state", "Production State", Ty::Sel(MO_STATES)),
            f("date_start", "Start", Ty::Datetime),
            f("date_finished", "End", Ty::Datetime),
        ],
    },
    ModelDef {
        name: MO,
        desc: "Manufacturing Order",
        rec_name: Some("name"),
        order: "id desc",
        fields: &[
            req("name", "Reference", Ty::Char),
            req("product_qty", "Quantity To Produce", Ty::Float),
            f("qty_producing", "Quantity Producing", Ty::Float),
            f("state", "State", Ty::Sel(MO_STATES)),
            // Required in Odoo; optional here so tests that need no
            // product need not seed one.
            f("product_id", "Product", Ty::M2o(PRODUCT)),
            f("product_uom_id", "Product Unit of Measure", Ty::M2o(UOM)),
            f("location_src_id", "Components Location", Ty::M2o(LOCATION)),
            f(
                "location_dest_id",
                "Finished Products Location",
                Ty::M2o(LOCATION),
            ),
        ],
    },
    ModelDef {
        name: PROD,
        desc: "Workcenter Productivity Log",
        rec_name: None,
        order: "id desc",
        fields: &[
            req("workcenter_id", "Work Center", Ty::M2o(WC)),
            req("loss_id", "Loss Reason", Ty::M2o(LOSS)),
            comp("loss_type", "Effectiveness", Ty::Sel(LOSS_TYPES)),
            f("description", "Description", Ty::Text),
            req("date_start", "Start Date", Ty::Datetime),
            f("date_end", "End Date", Ty::Datetime),
            comp("duration", "Duration", Ty::Float),
            f("workorder_id", "Work Order", Ty::M2o(WO)),
            f("user_id", "User", Ty::M2o(USERS)),
        ],
    },
    // Maintenance (4.5): community module `maintenance`.
    ModelDef {
        name: EQUIPMENT,
        desc: "Maintenance Equipment",
        rec_name: Some("name"),
        order: "name",
        fields: &[
            req("name", "Equipment Name", Ty::Char),
            f("serial_no", "Serial Number", Ty::Char),
            f("active", "Active", Ty::Bool),
        ],
    },
    ModelDef {
        name: TEAM,
        desc: "Maintenance Teams",
        rec_name: Some("name"),
        order: "id",
        fields: &[req("name", "Team Name", Ty::Char)],
    },
    ModelDef {
        name: STAGE,
        desc: "Maintenance Stage",
        rec_name: Some("name"),
        order: "sequence, id",
        fields: &[
            req("name", "Name", Ty::Char),
            f("sequence", "Sequence", Ty::Int),
            f("done", "Request Done", Ty::Bool),
        ],
    },
    ModelDef {
        name: REQUEST,
        desc: "Maintenance Request",
        rec_name: Some("name"),
        order: "id desc",
        fields: &[
            req("name", "Subjects", Ty::Char),
            // Html in Odoo.
            f("description", "Description", Ty::Text),
            // A Date in Odoo; kept as its `YYYY-MM-DD` text here.
            f("request_date", "Request Date", Ty::Char),
            f("equipment_id", "Equipment", Ty::M2o(EQUIPMENT)),
            f("stage_id", "Stage", Ty::M2o(STAGE)),
            f("priority", "Priority", Ty::Sel(REQUEST_PRIORITIES)),
            req("kanban_state", "Kanban State", Ty::Sel(KANBAN_STATES)),
            f(
                "maintenance_type",
                "Maintenance Type",
                Ty::Sel(MAINTENANCE_TYPES),
            ),
            req("maintenance_team_id", "Team", Ty::M2o(TEAM)),
        ],
    },
    ModelDef {
        name: MODULE,
        desc: "Module",
        rec_name: Some("name"),
        order: "name",
        fields: &[
            req("name", "Technical Name", Ty::Char),
            f("state", "Status", Ty::Sel(MODULE_STATES)),
        ],
    },
    // Quality (4.7): enterprise; served only once installed.
    ModelDef {
        name: TEST_TYPE,
        desc: "Quality Control Test Type",
        rec_name: Some("name"),
        order: "id",
        fields: &[
            req("name", "Name", Ty::Char),
            req("technical_name", "Technical name", Ty::Char),
        ],
    },
    ModelDef {
        name: QTEAM,
        desc: "Quality Control Team",
        rec_name: Some("name"),
        order: "id",
        fields: &[req("name", "Name", Ty::Char)],
    },
    ModelDef {
        name: CHECK,
        desc: "Quality Check",
        rec_name: Some("name"),
        order: "id",
        fields: &[
            f("name", "Reference", Ty::Char),
            f("title", "Title", Ty::Char),
            req("test_type_id", "Test Type", Ty::M2o(TEST_TYPE)),
            req("team_id", "Team", Ty::M2o(QTEAM)),
            f("quality_state", "Status", Ty::Sel(QUALITY_STATES)),
            f("measure", "Measure", Ty::Float),
            f("control_date", "Control Date", Ty::Datetime),
            f("note", "Note", Ty::Text),
        ],
    },
    ModelDef {
        name: ALERT,
        desc: "Quality Alert",
        rec_name: Some("name"),
        order: "id",
        fields: &[
            f("name", "Name", Ty::Char),
            f("title", "Title", Ty::Char),
            f("description", "Description", Ty::Text),
            req("team_id", "Team", Ty::M2o(QTEAM)),
            f("check_id", "Check", Ty::M2o(CHECK)),
            f("priority", "Priority", Ty::Sel(ALERT_PRIORITIES)),
        ],
    },
    // Inventory (4.6): products, locations, quants and the moves an applied
    // count makes.
    ModelDef {
        name: PRODUCT,
        desc: "Product Variant",
        rec_name: Some("name"),
        order: "id",
        fields: &[
            req("name", "Name", Ty::Char),
            f("default_code", "Internal Reference", Ty::Char),
        ],
    },
    ModelDef {
        name: LOCATION,
        desc: "Inventory Locations",
        rec_name: Some("complete_name"),
        order: "id",
        fields: &[
            req("name", "Location Name", Ty::Char),
            f("complete_name", "Full Location Name", Ty::Char),
            f("barcode", "Barcode", Ty::Char),
            f("scrap_location", "Is a Scrap Location?", Ty::Bool),
        ],
    },
    ModelDef {
        name: QUANT,
        desc: "Quants",
        rec_name: None,
        order: "id",
        fields: &[
            req("product_id", "Product", Ty::M2o(PRODUCT)),
            req("location_id", "Location", Ty::M2o(LOCATION)),
            f("quantity", "Quantity", Ty::Float),
            f("inventory_quantity", "Counted Quantity", Ty::Float),
            f("inventory_quantity_set", "Inventory Quantity Set", Ty::Bool),
            f("user_id", "Assigned To", Ty::M2o(USERS)),
            f("inventory_date", "Scheduled Date", Ty::Datetime),
        ],
    },
    ModelDef {
        name: MOVE,
        desc: "Stock Move",
        rec_name: None,
        order: "id",
        fields: &[
            req("product_id", "Product", Ty::M2o(PRODUCT)),
            f("location_id", "Source Location", Ty::M2o(LOCATION)),
            f(
                "location_dest_id",
                "Destination Location",
                Ty::M2o(LOCATION),
            ),
            f("product_uom_qty", "Demand", Ty::Float),
            f("is_inventory", "Inventory", Ty::Bool),
            f("scrapped", "Scrapped", Ty::Bool),
            f(
                "production_id",
                "Production Order for finished products",
                Ty::M2o(MO),
            ),
        ],
    },
    // Scrap (addons/stock/models/stock_scrap.py, with mrp's links).
    ModelDef {
        name: UOM,
        desc: "Product Unit of Measure",
        rec_name: Some("name"),
        order: "id",
        fields: &[req("name", "Unit of Measure", Ty::Char)],
    },
    ModelDef {
        name: SCRAP,
        desc: "Scrap",
        rec_name: Some("name"),
        order: "id desc",
        fields: &[
            req("name", "Reference", Ty::Char),
            f("origin", "Source Document", Ty::Char),
            req("product_id", "Product", Ty::M2o(PRODUCT)),
            req("product_uom_id", "Unit of Measure", Ty::M2o(UOM)),
            req("scrap_qty", "Quantity", Ty::Float),
            req("location_id", "Source Location", Ty::M2o(LOCATION)),
            req("scrap_location_id", "Scrap Location", Ty::M2o(LOCATION)),
            f("production_id", "Manufacturing Order", Ty::M2o(MO)),
            f("workorder_id", "Work Order", Ty::M2o(WO)),
            f("move_id", "Scrap Move", Ty::M2o(MOVE)),
            f("state", "Status", Ty::Sel(SCRAP_STATES)),
        ],
    },
    ModelDef {
        name: MESSAGE,
        desc: "Message",
        rec_name: None,
        order: "id desc",
        fields: &[
            f("model", "Related Document Model", Ty::Char),
            f("res_id", "Related Document ID", Ty::Int),
            f("body", "Contents", Ty::Text),
            f("message_type", "Type", Ty::Char),
        ],
    },
];

pub(super) fn model_def(name: &str) -> Option<&'static ModelDef> {
    MODELS.iter().find(|m| m.name == name)
}

impl ModelDef {
    pub(super) fn field(&'static self, name: &str) -> Option<&'static F> {
        match name {
            "id" => Some(&ID_FIELD),
            "display_name" => Some(&DISPLAY_NAME),
            _ => self.fields.iter().find(|f| f.name == name),
        }
    }
    pub(super) fn stored(&'static self) -> impl Iterator<Item = &'static F> {
        self.fields.iter().filter(|f| !f.computed)
    }
}
