//! The shared provider toolkit: what every resource kind needs and no kind should copy —
//! the id a stack decides, ownership tags for ids AWS assigns, tag maps, read-back after a
//! write, creates retried after a lost reply. Error classification lives in `errors.rs` (`AwsError::kind()`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::{AwsError, Cx, Live, Provider, Result};
use crate::value::{Desired, map_value};

/// Tag every created resource whose id AWS assigns carries, so that a create interrupted
/// before its id was recorded can still be found (and adopted) by the next plan.
pub const ADDRESS_TAG: &str = "stackwright:address";
/// With [`ADDRESS_TAG`]: the state's lineage, so two stacks' resources never mix.
pub const LINEAGE_TAG: &str = "stackwright:lineage";

/// The id the stack decides through one attribute (a bucket's `name`), once it is known.
pub fn id_from(desired: &BTreeMap<String, Desired>, attr: &str) -> Option<String> {
    desired
        .get(attr)
        .and_then(Desired::known)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// What takes `have` to `want`: the tags to set (new or changed values) and the keys to
/// remove. Each service then makes its own two calls (TagResource / UntagResource, …).
pub fn tag_changes<'a>(
    have: &BTreeMap<String, String>,
    want: &'a BTreeMap<String, String>,
) -> (Vec<(&'a String, &'a String)>, Vec<String>) {
    let set = want
        .iter()
        .filter(|(k, v)| have.get(*k) != Some(*v))
        .collect();
    let unset = have
        .keys()
        .filter(|k| !want.contains_key(*k))
        .cloned()
        .collect();
    (set, unset)
}

/// Tags as an attribute value: sorted, and an empty table when there are none, so that
/// `tags = {}` compares equal (a stack without `tags` leaves them unmanaged).
pub fn tags_value(tags: &BTreeMap<String, String>) -> Value {
    map_value(tags.clone())
}

/// The outcome of a create, where an SDK retry whose first attempt succeeded but lost its
/// reply meets `already_exists` (the service's code for it): that is our own object when
/// `ours` — a read-back — finds exactly what this create sent, since the plan saw none.
/// Anything else stays an error.
pub async fn retried_create<T>(
    sent: Result<T>,
    already_exists: &str,
    id: &str,
    ours: impl std::future::Future<Output = bool>,
) -> Result<()> {
    match sent {
        Ok(_) => Ok(()),
        Err(e) if e.is(already_exists) && ours.await => {
            tracing::debug!(%id, code = already_exists, "create retried after a lost reply; it had succeeded");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Reads a resource right after writing it; an absent one is an error naming the id.
pub async fn read_back(provider: &dyn Provider, cx: &Cx<'_>, id: &str) -> Result<Live> {
    provider.read(cx, id).await?.ok_or_else(|| {
        AwsError::local(format!(
            "{} {id} was not found right after it was written",
            provider.kind()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_changes_set_what_differs_and_remove_what_is_gone() {
        let m = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let have = m(&[("keep", "1"), ("change", "old"), ("drop", "x")]);
        let want = m(&[("keep", "1"), ("change", "new"), ("add", "y")]);
        let (set, unset) = tag_changes(&have, &want);
        let set: Vec<(&str, &str)> = set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(set, [("add", "y"), ("change", "new")]);
        assert_eq!(unset, ["drop"]);
        let (set, unset) = tag_changes(&want, &want);
        assert!(set.is_empty() && unset.is_empty());
    }
}
