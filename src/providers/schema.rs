//! The attribute schema each resource kind declares.
//!
//! The stack parser validates a resource's table against its kind's schema (unknown keys,
//! types, required attributes), and the planner reads from it which attributes force a
//! replacement, which are kept only in state, and which may hold secrets. Schemas are
//! `static`s built with the `const` builders below.

use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Ty {
    String,
    Bool,
    Int,
    /// An integer or a decimal number (alarm thresholds).
    Number,
    /// A string restricted to the listed values.
    Enum(&'static [&'static str]),
    StringList,
    /// A table of string values (tags, parameter-group parameters). Numbers and booleans
    /// are accepted and stored as strings, as AWS does.
    StringMap,
    /// An array of tables (`[[kind.name.block]]`), each validated against the nested attributes.
    Blocks(&'static [Attr]),
    /// One inline table (`health_check = { path = "/ready" }`), validated against the nested
    /// attributes like an item of [`Ty::Blocks`].
    Table(&'static [Attr]),
}

impl Ty {
    pub fn describe(&self) -> String {
        match self {
            Ty::String => "a string".into(),
            Ty::Bool => "a boolean (true or false)".into(),
            Ty::Int => "an integer".into(),
            Ty::Number => "a number".into(),
            Ty::Enum(values) => format!(
                "one of {}",
                values
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Ty::StringList => "an array of strings".into(),
            Ty::StringMap => "a table of strings".into(),
            Ty::Blocks(_) => "an array of tables".into(),
            Ty::Table(_) => "a table".into(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretMode {
    /// Plain values only.
    No,
    /// A plain value or `{ from_env = .. }` / `{ from_file = .. }`; the latter is sensitive.
    Allowed,
    /// Must come from a secret source; sent on create/update, never read back, never compared.
    WriteOnly,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Default {
    None,
    Bool(bool),
    Int(i64),
    Str(&'static str),
}

impl Default {
    pub fn value(&self) -> Option<Value> {
        match *self {
            Default::None => None,
            Default::Bool(b) => Some(Value::Bool(b)),
            Default::Int(i) => Some(Value::from(i)),
            Default::Str(s) => Some(Value::from(s)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
    /// Changing it replaces the resource (`-/+`).
    pub force_new: bool,
    /// Kept in state only (a behaviour flag such as `force_destroy`), never read from AWS.
    pub local: bool,
    pub secret: SecretMode,
    pub default: Default,
    /// A [`Ty::StringList`] that may also be written as one string (`"ecs-tasks.amazonaws.com"`),
    /// read as a list of that one item.
    pub one_or_many: bool,
    pub doc: &'static str,
}

impl Attr {
    pub const fn new(name: &'static str, ty: Ty, doc: &'static str) -> Self {
        Attr {
            name,
            ty,
            required: false,
            force_new: false,
            local: false,
            secret: SecretMode::No,
            default: Default::None,
            one_or_many: false,
            doc,
        }
    }
    pub const fn required(mut self) -> Self {
        self.required = true;
        self
    }
    pub const fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }
    pub const fn local(mut self) -> Self {
        self.local = true;
        self
    }
    pub const fn secret(mut self, mode: SecretMode) -> Self {
        self.secret = mode;
        self
    }
    pub const fn default(mut self, d: Default) -> Self {
        self.default = d;
        self
    }
    pub const fn one_or_many(mut self) -> Self {
        self.one_or_many = true;
        self
    }
}

#[derive(Debug)]
pub struct Schema {
    pub attrs: &'static [Attr],
    /// Attributes known only once the resource exists (`arn`, `endpoint`).
    pub outputs: &'static [&'static str],
}

impl Schema {
    pub fn attr(&self, name: &str) -> Option<&'static Attr> {
        self.attrs.iter().find(|a| a.name == name)
    }
    pub fn is_output(&self, name: &str) -> bool {
        self.outputs.contains(&name)
    }
    /// Every name a reference may use: inputs and outputs.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.attrs
            .iter()
            .map(|a| a.name)
            .chain(self.outputs.iter().copied())
    }
}
