//! `stackwright rollback STACK --env E ecs_service.api [--to REVISION]`: redeploy a task
//! definition revision the service ran before (the seeds' "redeploy the previous image"),
//! wait for steady state as apply does, and record it in state and history. The stack file
//! is not changed: the next plan shows that it still names the newer task, so the file and
//! AWS never disagree silently.

use std::time::Duration;

use anyhow::bail;

use super::commands::{backend_for, check_state_belongs, connect, load_stack_offline};
use super::{Exit, RuleArgs, StackArgs, output};
use crate::providers::ecs_service::{deploy_revision, kept_revisions};
use crate::providers::{Cx, registry};
use crate::state::history;

/// `family:N` of a task definition ARN.
fn revision_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// The revision to go back to: `--to` (a number, `family:N` or an ARN) among the kept
/// ones, else the one deployed before `current`.
fn pick(kept: &[String], current: &str, to: Option<&str>) -> anyhow::Result<String> {
    let listed = || {
        kept.iter()
            .map(|k| revision_name(k))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(to) = to {
        let found = kept.iter().find(|k| {
            k.as_str() == to
                || revision_name(k) == to
                || revision_name(k).rsplit_once(':').map(|(_, n)| n) == Some(to)
        });
        return match found {
            Some(k) if k == current => bail!(
                "{} is the revision the service runs now: nothing to roll back",
                revision_name(k)
            ),
            Some(k) => Ok(k.clone()),
            None => bail!(
                "revision `{to}` is not one this service deployed (kept: {})\n  = help: pass one of those to --to",
                listed()
            ),
        };
    }
    let before = match kept.iter().position(|k| k == current) {
        Some(0) => None,
        Some(i) => kept.get(i - 1),
        // Running something this stack did not deploy: the newest one it did.
        None => kept.last(),
    };
    match before {
        Some(k) => Ok(k.clone()),
        None => bail!(
            "the service has no earlier revision to roll back to (kept: {})",
            listed()
        ),
    }
}

pub async fn rollback(
    args: &StackArgs,
    address: &str,
    to: Option<&str>,
    wait_timeout: Duration,
    lock_timeout: Duration,
    rules: &RuleArgs,
) -> anyhow::Result<Exit> {
    let stack = load_stack_offline(args)?;
    // A rollback is a deploy: the environment's windows and confirmation apply to it too
    // (an incident outside the window says so with --override-window --reason).
    let cleared = super::rules::enforce(&stack, "roll back", rules)?;
    if !super::rules::ask(&cleared, "roll back") {
        output::println("\nRollback cancelled.");
        return Ok(Exit::Failure);
    }
    let backend = backend_for(args, &stack).await?;
    let backend = &*backend;
    let _lock = backend.lock("rollback", lock_timeout).await?;
    let Some(mut state) = crate::apply::load_for_write(backend).await? else {
        bail!(
            "no state at {}: nothing has been applied yet",
            backend.describe()
        );
    };
    check_state_belongs(&Some(state.clone()), backend, &stack)?;
    let Some(resource) = state.resources.get(address).cloned() else {
        bail!(
            "`{address}` is not in state\n  = help: `stackwright state list` shows what state holds"
        );
    };
    if resource.kind != "ecs_service" {
        bail!(
            "`{address}` is a {}: rollback redeploys an ecs_service's earlier task definition",
            resource.kind
        );
    }
    let aws = connect(&stack).await?;
    let p = registry().provider("ecs_service").expect("registered kind");
    let events = output::TermEvents::new(false);
    let cx = Cx {
        prior: Some(&resource),
        ..Cx::new(&aws, address, &events, wait_timeout)
    };
    let Some(live) = p.read(&cx, &resource.id).await? else {
        bail!(
            "`{address}` ({}) no longer exists in AWS: apply recreates it",
            resource.id
        );
    };
    let current = live
        .attrs
        .get("task_definition_arn")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_owned();
    let kept = kept_revisions(resource.private.as_ref());
    let target = pick(&kept, &current, to)?;
    output::println(&format!(
        "{address}: rolling back from {} to {}",
        revision_name(&current),
        revision_name(&target)
    ));
    deploy_revision(&cx, &resource.id, &target).await?;
    let Some(after) = p.read(&cx, &resource.id).await? else {
        bail!("`{address}` disappeared during the rollback");
    };
    let expected = state.saved_serial();
    let r = state.resources.get_mut(address).expect("checked");
    for k in ["task", "task_definition_arn", "revision"] {
        if let Some(v) = after.attrs.get(k) {
            r.attributes.insert(k.to_owned(), v.clone());
        }
    }
    let mut d = history::Draft::new("rollback").touched(
        address,
        &format!(
            "rollback from {} to {}",
            revision_name(&current),
            revision_name(&target)
        ),
        "done",
    );
    d.stack_digest = Some(stack.digest.clone());
    d.stack_dir = stack.path.parent().map(Into::into);
    d.caller_arn = aws.identity.get().map(|c| c.arn.clone());
    d.override_reason = cleared.override_reason;
    d.note = cleared.note;
    backend.save(&mut state, expected, &d).await?;
    output::success(&format!(
        "{address} runs {} again (state serial {}).",
        revision_name(&target),
        state.serial
    ));
    output::println(&format!(
        "The stack file still describes the newer task: the next `stackwright plan {}` shows it, and apply would deploy it again. Change the file (e.g. the image tag) to stay on this revision.",
        args.stack.display()
    ));
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept() -> Vec<String> {
        (1..=3)
            .map(|n| format!("arn:aws:ecs:us-east-1:123456789012:task-definition/api:{n}"))
            .collect()
    }

    #[test]
    fn without_to_the_revision_before_the_running_one() {
        let k = kept();
        assert_eq!(pick(&k, &k[2], None).unwrap(), k[1]);
        assert_eq!(pick(&k, &k[1], None).unwrap(), k[0]);
        assert!(pick(&k, &k[0], None).is_err(), "nothing before the first");
        // Running a revision deployed outside: back to the newest one this stack deployed.
        assert_eq!(pick(&k, "arn:…/api:9", None).unwrap(), k[2]);
    }

    #[test]
    fn to_names_a_kept_revision_by_number_name_or_arn() {
        let k = kept();
        assert_eq!(pick(&k, &k[2], Some("1")).unwrap(), k[0]);
        assert_eq!(pick(&k, &k[2], Some("api:2")).unwrap(), k[1]);
        assert_eq!(pick(&k, &k[2], Some(&k[0])).unwrap(), k[0]);
        let e = pick(&k, &k[2], Some("7")).unwrap_err().to_string();
        assert!(e.contains("kept: api:1, api:2, api:3"), "{e}");
        assert!(pick(&k, &k[2], Some("3")).is_err(), "the running one");
    }
}
