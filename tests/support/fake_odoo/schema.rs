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
