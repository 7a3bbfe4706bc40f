//! An in-memory resource kind for the engine's unit tests: no AWS behind it, and faults
//! injected on purpose (a create that fails after AWS "created" it, a create that never
//! returns — the test then drops the apply, as a kill would).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::Value;

use super::{Attr, AwsError, Cx, Live, Provider, Result, Schema, Ty};
use crate::value::{Attrs, Desired, Resolved};

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new("name", Ty::String, "Name; the id.")
            .required()
            .force_new(),
        Attr::new("size", Ty::Int, "A mutable attribute."),
    ],
    outputs: &["arn"],
};

/// What exists "in AWS", and the faults to inject.
#[derive(Clone, Default)]
pub struct World {
    pub objects: Arc<Mutex<BTreeMap<String, Attrs>>>,
    /// Names whose create succeeds in "AWS" and then fails (a wait that times out).
    pub fail_after_create: Arc<Mutex<BTreeSet<String>>>,
    /// Names whose create succeeds in "AWS" and then never returns (killed mid-wait).
    pub hang_after_create: Arc<Mutex<BTreeSet<String>>>,
    pub calls: Arc<Mutex<Vec<String>>>,
}

pub struct Memory(pub World);

#[async_trait]
impl Provider for Memory {
    fn kind(&self) -> &'static str {
        "mem_thing"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }
    fn id_for(&self, desired: &BTreeMap<String, Desired>) -> Option<String> {
        desired
            .get("name")
            .and_then(Desired::known)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }
    fn plan_change(
        &self,
        prior: Option<&Attrs>,
        desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<super::PlannedChange, String> {
        let _ = (prior, desired);
        let requires_replace: Vec<String> =
            changed.iter().filter(|c| *c == "name").cloned().collect();
        Ok(super::PlannedChange {
            create_before_destroy: !requires_replace.is_empty(),
            requires_replace,
            notes: Default::default(),
        })
    }

    async fn read(&self, _cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        self.0.calls.lock().unwrap().push(format!("read {id}"));
        Ok(self.0.objects.lock().unwrap().get(id).map(|a| Live {
            id: id.to_owned(),
            attrs: a.clone(),
            private: None,
        }))
    }
    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input.str("name").expect("name").to_owned();
        self.0.calls.lock().unwrap().push(format!("create {name}"));
        let mut attrs = input.attrs.clone();
        attrs.insert("arn".into(), Value::from(format!("arn:mem:{name}")));
        if self.0.objects.lock().unwrap().contains_key(&name) {
            return Err(AwsError::new(Some("AlreadyExists"), name));
        }
        self.0
            .objects
            .lock()
            .unwrap()
            .insert(name.clone(), attrs.clone());
        cx.created(&name);
        if self.0.fail_after_create.lock().unwrap().contains(&name) {
            return Err(AwsError::local(format!("timed out waiting for {name}")));
        }
        if self.0.hang_after_create.lock().unwrap().contains(&name) {
            std::future::pending::<()>().await;
        }
        Ok(Live {
            id: name,
            attrs,
            private: None,
        })
    }
    async fn update(
        &self,
        _cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        _changed: &[String],
    ) -> Result<Live> {
        self.0.calls.lock().unwrap().push(format!("update {id}"));
        let mut objects = self.0.objects.lock().unwrap();
        let o = objects.get_mut(id).ok_or_else(|| AwsError::local("gone"))?;
        for (k, v) in &input.attrs {
            o.insert(k.clone(), v.clone());
        }
        Ok(Live {
            id: id.to_owned(),
            attrs: o.clone(),
            private: None,
        })
    }
    async fn delete(&self, _cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        self.0.calls.lock().unwrap().push(format!("delete {id}"));
        self.0.objects.lock().unwrap().remove(id);
        Ok(())
    }
}
