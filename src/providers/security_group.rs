//! `security_group`: a VPC security group and its ingress and egress rules.
//!
//! Rules are a set. A `[[security_group.x.ingress]]` block may list several CIDRs; the
//! stack's blocks and what AWS reports are both flattened into single rules (one protocol,
//! port range and source each) and sorted ([`Provider::canonical`]), so neither the order in
//! the file nor AWS's grouping ever shows as a diff. An update authorizes what is missing
//! first, then revokes what is extra (the new rule is in place before the old one goes),
//! and edits changed descriptions in place. `egress` is managed only when written: AWS gives
//! every new group an allow-all egress rule, which a written `egress` replaces.
//!
//! The id (`sg-…`) is AWS's. The create tags the group with its address and the state's
//! lineage, so a create whose reply was lost, or that was killed before the id was
//! recorded, is found and adopted ([`Provider::find_created`]); those tags are never shown
//! or removed as the stack's own.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, SecurityGroup as Ec2Group, Tag,
    TagSpecification, UserIdGroupPair,
};
use serde_json::{Value, json};

use super::schema::Default;
use super::toolkit::{ADDRESS_TAG, LINEAGE_TAG, tags_value};
use super::{
    Attr, Aws, AwsError, ChangeNotes, Cx, Live, PlannedChange, Provider, Result, Schema, Ty,
    aws_err,
};
use crate::value::{Attrs, Desired, Resolved};

pub struct SecurityGroup;

const DEFAULT_DESCRIPTION: &str = "Managed by Stackwright";

static RULE: &[Attr] = &[
    Attr::new(
        "protocol",
        Ty::String,
        "\"tcp\", \"udp\", \"icmp\", \"icmpv6\", \"all\" or an IP protocol number.",
    )
    .default(Default::Str("tcp")),
    Attr::new("port", Ty::Int, "One port (or from_port and to_port)."),
    Attr::new(
        "from_port",
        Ty::Int,
        "First port of a range (ICMP: the type).",
    ),
    Attr::new("to_port", Ty::Int, "Last port of a range (ICMP: the code)."),
    Attr::new(
        "cidr_blocks",
        Ty::StringList,
        "IPv4 sources (ingress) or destinations (egress).",
    ),
    Attr::new(
        "ipv6_cidr_blocks",
        Ty::StringList,
        "IPv6 sources or destinations.",
    ),
    Attr::new(
        "source_security_group",
        Ty::String,
        "Another group's id as source (ingress) or destination (egress), e.g. \"${security_group.alb.id}\".",
    ),
    Attr::new("description", Ty::String, "The rule's description."),
];

static SCHEMA: Schema = Schema {
    attrs: &[
        Attr::new(
            "name",
            Ty::String,
            "Group name, unique in its VPC (not starting with sg-).",
        )
        .required()
        .force_new(),
        Attr::new(
            "description",
            Ty::String,
            "Description (AWS cannot change it).",
        )
        .force_new()
        .default(Default::Str(DEFAULT_DESCRIPTION)),
        Attr::new(
            "vpc",
            Ty::String,
            "VPC id, e.g. \"${data.vpc.main.id}\" (default: the account's default VPC).",
        )
        .force_new(),
        Attr::new(
            "ingress",
            Ty::Blocks(RULE),
            "Inbound rules (a set; `ingress = []` for none).",
        ),
        Attr::new(
            "egress",
            Ty::Blocks(RULE),
            "Outbound rules (a set); when absent AWS's allow-all rule is left alone.",
        ),
        Attr::new("tags", Ty::StringMap, "Tags."),
    ],
    outputs: &["id", "arn", "owner_id"],
};

#[async_trait]
impl Provider for SecurityGroup {
    fn kind(&self) -> &'static str {
        "security_group"
    }

    fn service(&self) -> &'static str {
        "ec2"
    }
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    /// AWS assigns the id: nothing to look up before the create.
    fn id_for(&self, _desired: &BTreeMap<String, Desired>) -> Option<String> {
        None
    }

    fn canonical(&self, attr: &str, v: &Value) -> Value {
        match attr {
            "ingress" | "egress" => match rules_of(v) {
                Ok(rules) => rules_value(&rules),
                Err(_) => v.clone(),
            },
            _ => v.clone(),
        }
    }

    fn check_attr(&self, attr: &str, value: &Value) -> std::result::Result<(), String> {
        match (attr, value) {
            ("name", Value::String(n)) => {
                if n.is_empty() || n.len() > 255 {
                    return Err(format!(
                        "a group name has 1 to 255 characters, not {}",
                        n.len()
                    ));
                }
                if n.to_ascii_lowercase().starts_with("sg-") {
                    return Err(format!(
                        "\"{n}\" starts with sg-, which AWS reserves for ids"
                    ));
                }
                ascii_text(n)
            }
            ("description", Value::String(d)) => {
                if d.len() > 255 {
                    return Err(format!(
                        "a description has at most 255 characters, not {}",
                        d.len()
                    ));
                }
                ascii_text(d)
            }
            ("ingress" | "egress", Value::Array(blocks)) => {
                for (i, b) in blocks.iter().enumerate() {
                    check_block(b).map_err(|e| format!("rule {}: {e}", i + 1))?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    async fn find_created(
        &self,
        cx: &Cx<'_>,
        address: &str,
        lineage: &str,
    ) -> Result<Option<Live>> {
        let out = cx
            .aws
            .ec2()
            .describe_security_groups()
            .filters(filter(&format!("tag:{ADDRESS_TAG}"), address))
            .filters(filter(&format!("tag:{LINEAGE_TAG}"), lineage))
            .send()
            .await
            .map_err(aws_err)?;
        Ok(out.security_groups().first().map(live_of))
    }

    async fn read(&self, cx: &Cx<'_>, id: &str) -> Result<Option<Live>> {
        Ok(describe(cx.aws, id).await?.as_ref().map(live_of))
    }

    /// DescribeSecurityGroups takes many ids (rules and tags come with each group).
    fn batch_size(&self) -> usize {
        100
    }

    async fn read_many(
        &self,
        cx: &Cx<'_>,
        items: &[(&str, Option<&std::collections::BTreeSet<String>>)],
    ) -> Result<Vec<Option<Live>>> {
        let ids: Vec<String> = items.iter().map(|(id, _)| (*id).to_owned()).collect();
        match cx
            .aws
            .ec2()
            .describe_security_groups()
            .set_group_ids(Some(ids))
            .send()
            .await
        {
            Ok(out) => {
                let by_id: BTreeMap<&str, &Ec2Group> = out
                    .security_groups()
                    .iter()
                    .filter_map(|g| Some((g.group_id()?, g)))
                    .collect();
                Ok(items
                    .iter()
                    .map(|(id, _)| by_id.get(id).map(|g| live_of(g)))
                    .collect())
            }
            Err(e) => {
                let e = aws_err(e);
                // One id that no longer exists fails the whole call: read those one by one.
                if !(e.is("InvalidGroup.NotFound") || e.is("InvalidGroupId.Malformed")) {
                    return Err(e);
                }
                let mut out = Vec::with_capacity(items.len());
                for (id, _) in items {
                    out.push(describe(cx.aws, id).await?.as_ref().map(live_of));
                }
                Ok(out)
            }
        }
    }

    async fn create(&self, cx: &Cx<'_>, input: &Resolved) -> Result<Live> {
        let name = input
            .str("name")
            .ok_or_else(|| AwsError::local("security_group: name is required"))?;
        let mut tags: Vec<Tag> = input
            .string_map("tags")
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect();
        tags.push(Tag::builder().key(ADDRESS_TAG).value(cx.address).build());
        tags.push(Tag::builder().key(LINEAGE_TAG).value(cx.lineage).build());
        let sent = cx
            .aws
            .ec2()
            .create_security_group()
            .group_name(name)
            .description(input.str("description").unwrap_or(DEFAULT_DESCRIPTION))
            .set_vpc_id(input.str("vpc").map(str::to_owned))
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::SecurityGroup)
                    .set_tags(Some(tags))
                    .build(),
            )
            .send()
            .await
            .map_err(aws_err);
        let id = match sent {
            Ok(out) => out
                .group_id()
                .ok_or_else(|| {
                    AwsError::local(format!("CreateSecurityGroup {name} returned no id"))
                })?
                .to_owned(),
            // An SDK retry after a lost reply meets the group its first attempt made: ours
            // only when it carries this address and lineage.
            Err(e) if e.is("InvalidGroup.Duplicate") => {
                match ours_by_name(cx, name, input.str("vpc")).await? {
                    Some(id) => id,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        cx.created(&id);
        let group = describe(cx.aws, &id).await?.ok_or_else(|| {
            AwsError::local(format!(
                "security group {id} not found right after it was created"
            ))
        })?;
        if input.attrs.contains_key("ingress") {
            sync_rules(
                cx,
                &id,
                Direction::Ingress,
                &group_rules(&group, Direction::Ingress),
                &wanted(input, "ingress")?,
            )
            .await?;
        }
        if input.attrs.contains_key("egress") {
            sync_rules(
                cx,
                &id,
                Direction::Egress,
                &group_rules(&group, Direction::Egress),
                &wanted(input, "egress")?,
            )
            .await?;
        }
        super::toolkit::read_back(self, cx, &id).await
    }

    async fn update(
        &self,
        cx: &Cx<'_>,
        id: &str,
        input: &Resolved,
        changed: &[String],
    ) -> Result<Live> {
        let group = describe(cx.aws, id)
            .await?
            .ok_or_else(|| AwsError::local(format!("security group {id} no longer exists")))?;
        for attr in changed {
            match attr.as_str() {
                "ingress" => {
                    let have = group_rules(&group, Direction::Ingress);
                    sync_rules(
                        cx,
                        id,
                        Direction::Ingress,
                        &have,
                        &wanted(input, "ingress")?,
                    )
                    .await?;
                }
                "egress" => {
                    let have = group_rules(&group, Direction::Egress);
                    sync_rules(cx, id, Direction::Egress, &have, &wanted(input, "egress")?).await?;
                }
                "tags" => {
                    sync_tags(cx.aws, id, &user_tags(&group), &input.string_map("tags")).await?
                }
                other => {
                    return Err(AwsError::local(format!(
                        "security_group {id}: {other} cannot change in place (the group must be replaced)"
                    )));
                }
            }
        }
        super::toolkit::read_back(self, cx, id).await
    }

    async fn delete(&self, cx: &Cx<'_>, id: &str, _prior: &Attrs) -> Result<()> {
        // A group still attached to a network interface (an RDS instance or a task being
        // torn down releases its interfaces minutes later) or referenced by another group's
        // rule cannot go yet: AWS says DependencyViolation, which passes with time.
        let aws = cx.aws;
        super::wait_for(
            cx,
            &format!("security group {id} to be released"),
            || async move {
                match aws.ec2().delete_security_group().group_id(id).send().await {
                    Ok(_) => Ok(None),
                    Err(e) => match aws_err(e) {
                        e if e.is("InvalidGroup.NotFound") => Ok(None),
                        e if e.is("DependencyViolation") => {
                            Ok(Some("in use (DependencyViolation)".to_owned()))
                        }
                        e => Err(e),
                    },
                }
            },
        )
        .await
    }

    fn plan_change(
        &self,
        _prior: Option<&Attrs>,
        _desired: &BTreeMap<String, Desired>,
        changed: &[String],
    ) -> std::result::Result<PlannedChange, String> {
        let requires_replace: Vec<String> = changed
            .iter()
            .filter(|c| SCHEMA.attr(c).is_some_and(|a| a.force_new))
            .cloned()
            .collect();
        Ok(PlannedChange {
            // A new name can live beside the old one: create it first, so that what
            // references the group (other groups' rules, instances) moves over before the
            // old one goes. A changed description or VPC with the same name cannot.
            create_before_destroy: changed.iter().any(|c| c == "name"),
            requires_replace,
            notes: ChangeNotes::default(),
        })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

/// Where a rule lets traffic come from (ingress) or go to (egress).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Peer {
    Cidr(String),
    Ipv6(String),
    Group(String),
}

/// One rule, as AWS keys it: protocol, port range and peer; the description rides along.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Rule {
    protocol: String,
    ports: Option<(i32, i32)>,
    peer: Peer,
    description: Option<String>,
}

impl Rule {
    fn key(&self) -> (&str, Option<(i32, i32)>, &Peer) {
        (&self.protocol, self.ports, &self.peer)
    }
}

/// `"6"` and `"tcp"` are one protocol; `"-1"` is `"all"`.
fn canonical_protocol(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "6" | "tcp" => "tcp".into(),
        "17" | "udp" => "udp".into(),
        "1" | "icmp" => "icmp".into(),
        "58" | "icmpv6" => "icmpv6".into(),
        "-1" | "all" => "all".into(),
        other => other.into(),
    }
}

fn aws_protocol(p: &str) -> &str {
    if p == "all" { "-1" } else { p }
}

/// Ports as the rule means them: none for "all" and for an ICMP rule of every type.
fn canonical_ports(protocol: &str, from: Option<i64>, to: Option<i64>) -> Option<(i32, i32)> {
    match (protocol, from, to) {
        ("all", _, _) => None,
        ("tcp" | "udp", Some(f), Some(t)) => Some((f as i32, t as i32)),
        (_, Some(-1), Some(-1)) | (_, None, None) => None,
        (_, Some(f), Some(t)) => Some((f as i32, t as i32)),
        (_, Some(f), None) => Some((f as i32, -1)),
        (_, None, Some(t)) => Some((-1, t as i32)),
    }
}

/// The blocks of `ingress` or `egress`, flattened into single rules, sorted.
fn rules_of(v: &Value) -> std::result::Result<Vec<Rule>, String> {
    let Value::Array(blocks) = v else {
        return Err("rules must be an array of tables".into());
    };
    let mut out = BTreeSet::new();
    for b in blocks {
        let m = b.as_object().ok_or("each rule must be a table")?;
        let protocol =
            canonical_protocol(m.get("protocol").and_then(Value::as_str).unwrap_or("tcp"));
        let port = m.get("port").and_then(Value::as_i64);
        let from = m.get("from_port").and_then(Value::as_i64).or(port);
        let to = m.get("to_port").and_then(Value::as_i64).or(port);
        let ports = canonical_ports(&protocol, from, to);
        let description = m
            .get("description")
            .and_then(Value::as_str)
            .filter(|d| !d.is_empty())
            .map(str::to_owned);
        let strings = |k: &str| -> Vec<String> {
            m.get(k)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut peers: Vec<Peer> = strings("cidr_blocks").into_iter().map(Peer::Cidr).collect();
        peers.extend(strings("ipv6_cidr_blocks").into_iter().map(Peer::Ipv6));
        peers.extend(
            m.get("source_security_group")
                .and_then(Value::as_str)
                .map(|g| Peer::Group(g.to_owned())),
        );
        for peer in peers {
            out.insert(Rule {
                protocol: protocol.clone(),
                ports,
                peer,
                description: description.clone(),
            });
        }
    }
    Ok(out.into_iter().collect())
}

/// Rules in the stack's own vocabulary, one source each: what plans show and state keeps.
fn rules_value(rules: &[Rule]) -> Value {
    Value::Array(
        rules
            .iter()
            .map(|r| {
                let mut m = serde_json::Map::new();
                m.insert("protocol".into(), json!(r.protocol));
                match r.ports {
                    Some((f, t)) if f == t => {
                        m.insert("port".into(), json!(f));
                    }
                    Some((f, t)) => {
                        m.insert("from_port".into(), json!(f));
                        m.insert("to_port".into(), json!(t));
                    }
                    None => {}
                }
                match &r.peer {
                    Peer::Cidr(c) => m.insert("cidr_blocks".into(), json!([c])),
                    Peer::Ipv6(c) => m.insert("ipv6_cidr_blocks".into(), json!([c])),
                    Peer::Group(g) => m.insert("source_security_group".into(), json!(g)),
                };
                if let Some(d) = &r.description {
                    m.insert("description".into(), json!(d));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn wanted(input: &Resolved, attr: &str) -> Result<Vec<Rule>> {
    match input.attrs.get(attr) {
        Some(v) => rules_of(v).map_err(|e| AwsError::local(format!("{attr}: {e}"))),
        None => Ok(Vec::new()),
    }
}

/// A rule block's shape: exactly one kind of peer, ports that fit the protocol, CIDRs that
/// parse. A `null` is a value known only at apply (a reference): present, not checked.
fn check_block(b: &Value) -> std::result::Result<(), String> {
    let m = b.as_object().ok_or("must be a table")?;
    let set = |k: &str| {
        m.get(k)
            .is_some_and(|v| !matches!(v, Value::Array(a) if a.is_empty()))
    };
    let peers = ["cidr_blocks", "ipv6_cidr_blocks", "source_security_group"];
    let given: Vec<&str> = peers.iter().copied().filter(|k| set(k)).collect();
    if given.len() != 1 {
        return Err(format!(
            "a rule needs exactly one source (cidr_blocks, ipv6_cidr_blocks or source_security_group), found {}",
            if given.is_empty() {
                "none".to_owned()
            } else {
                given.join(" and ")
            }
        ));
    }
    let protocol = match m.get("protocol") {
        Some(Value::String(p)) => canonical_protocol(p),
        _ => "tcp".into(),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "icmp" | "icmpv6" | "all")
        && protocol.parse::<u8>().is_err()
    {
        return Err(format!(
            "unknown protocol \"{protocol}\": use tcp, udp, icmp, icmpv6, all or a protocol number 0-255"
        ));
    }
    let port = m.contains_key("port");
    let range = m.contains_key("from_port") || m.contains_key("to_port");
    if port && range {
        return Err("give either port or from_port and to_port, not both".into());
    }
    let int = |k: &str| m.get(k).and_then(Value::as_i64);
    match protocol.as_str() {
        "all" if port || range => {
            return Err("protocol \"all\" covers every port: drop port/from_port/to_port".into());
        }
        "tcp" | "udp" => {
            let range_given = m.contains_key("from_port") && m.contains_key("to_port");
            if !port && !range_given {
                return Err(format!(
                    "a {protocol} rule needs port = N (or from_port and to_port)"
                ));
            }
            for k in ["port", "from_port", "to_port"] {
                if let Some(p) = int(k)
                    && !(0..=65535).contains(&p)
                {
                    return Err(format!("{k} {p} is out of range: ports are 0 to 65535"));
                }
            }
            if let (Some(f), Some(t)) = (int("from_port"), int("to_port"))
                && f > t
            {
                return Err(format!("from_port {f} is above to_port {t}"));
            }
        }
        _ => {}
    }
    for (k, v6) in [("cidr_blocks", false), ("ipv6_cidr_blocks", true)] {
        for c in m.get(k).and_then(Value::as_array).into_iter().flatten() {
            if let Some(c) = c.as_str() {
                check_cidr(c, v6)?;
            }
        }
    }
    if let Some(Value::String(g)) = m.get("source_security_group")
        && !g.starts_with("sg-")
    {
        return Err(format!(
            "source_security_group \"{g}\" is not a group id (sg-…); reference one: \"${{security_group.NAME.id}}\""
        ));
    }
    Ok(())
}

fn check_cidr(c: &str, v6: bool) -> std::result::Result<(), String> {
    let bad = || {
        format!(
            "\"{c}\" is not an {} CIDR block (e.g. {})",
            if v6 { "IPv6" } else { "IPv4" },
            if v6 { "::/0" } else { "10.0.0.0/16" }
        )
    };
    let (addr, len) = c.split_once('/').ok_or_else(bad)?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    if v6 {
        let _: std::net::Ipv6Addr = addr.parse().map_err(|_| bad())?;
        (len <= 128).then_some(()).ok_or_else(bad)
    } else {
        let _: std::net::Ipv4Addr = addr.parse().map_err(|_| bad())?;
        (len <= 32).then_some(()).ok_or_else(bad)
    }
}

/// AWS accepts a-z, A-Z, 0-9, spaces and ._-:/()#,@[]+=&;{}!$* in names and descriptions.
fn ascii_text(s: &str) -> std::result::Result<(), String> {
    match s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || " ._-:/()#,@[]+=&;{}!$*".contains(*c)))
    {
        Some(c) => Err(format!(
            "{c:?} is not allowed: use letters, digits, spaces and ._-:/()#,@[]+=&;{{}}!$*"
        )),
        None => Ok(()),
    }
}

fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

async fn describe(aws: &Aws, id: &str) -> Result<Option<Ec2Group>> {
    match aws
        .ec2()
        .describe_security_groups()
        .group_ids(id)
        .send()
        .await
    {
        Ok(out) => Ok(out.security_groups().first().cloned()),
        Err(e) => {
            let e = aws_err(e);
            if e.is("InvalidGroup.NotFound") || e.is("InvalidGroupId.Malformed") {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// The id of the group called `name` when it carries this create's address and lineage.
async fn ours_by_name(cx: &Cx<'_>, name: &str, vpc: Option<&str>) -> Result<Option<String>> {
    let mut req = cx
        .aws
        .ec2()
        .describe_security_groups()
        .filters(filter("group-name", name));
    if let Some(vpc) = vpc {
        req = req.filters(filter("vpc-id", vpc));
    }
    let out = req.send().await.map_err(aws_err)?;
    Ok(out
        .security_groups()
        .iter()
        .find(|g| {
            let tag = |k: &str| {
                g.tags()
                    .iter()
                    .find(|t| t.key() == Some(k))
                    .and_then(|t| t.value())
            };
            tag(ADDRESS_TAG) == Some(cx.address) && tag(LINEAGE_TAG) == Some(cx.lineage)
        })
        .and_then(|g| g.group_id().map(str::to_owned)))
}

fn group_rules(g: &Ec2Group, dir: Direction) -> Vec<Rule> {
    let perms = match dir {
        Direction::Ingress => g.ip_permissions(),
        Direction::Egress => g.ip_permissions_egress(),
    };
    let mut out = BTreeSet::new();
    for p in perms {
        let protocol = canonical_protocol(p.ip_protocol().unwrap_or("-1"));
        let ports = canonical_ports(
            &protocol,
            p.from_port().map(i64::from),
            p.to_port().map(i64::from),
        );
        let desc = |d: Option<&str>| d.filter(|d| !d.is_empty()).map(str::to_owned);
        let mut add = |peer: Peer, description: Option<String>| {
            out.insert(Rule {
                protocol: protocol.clone(),
                ports,
                peer,
                description,
            });
        };
        for r in p.ip_ranges() {
            if let Some(c) = r.cidr_ip() {
                add(Peer::Cidr(c.to_owned()), desc(r.description()));
            }
        }
        for r in p.ipv6_ranges() {
            if let Some(c) = r.cidr_ipv6() {
                add(Peer::Ipv6(c.to_owned()), desc(r.description()));
            }
        }
        for r in p.user_id_group_pairs() {
            if let Some(id) = r.group_id() {
                add(Peer::Group(id.to_owned()), desc(r.description()));
            }
        }
    }
    out.into_iter().collect()
}

fn permission(r: &Rule) -> IpPermission {
    let mut p = IpPermission::builder().ip_protocol(aws_protocol(&r.protocol));
    if let Some((from, to)) = r.ports {
        p = p.from_port(from).to_port(to);
    }
    let d = r.description.clone();
    match &r.peer {
        Peer::Cidr(c) => p.ip_ranges(IpRange::builder().cidr_ip(c).set_description(d).build()),
        Peer::Ipv6(c) => {
            p.ipv6_ranges(Ipv6Range::builder().cidr_ipv6(c).set_description(d).build())
        }
        Peer::Group(g) => p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(g)
                .set_description(d)
                .build(),
        ),
    }
    .build()
}

/// Makes the group's rules in one direction `want`: authorize what is missing, revoke what
/// is extra, then fix descriptions of rules that stay.
async fn sync_rules(
    cx: &Cx<'_>,
    id: &str,
    dir: Direction,
    have: &[Rule],
    want: &[Rule],
) -> Result<()> {
    let have_keys: BTreeMap<_, &Rule> = have.iter().map(|r| (r.key(), r)).collect();
    let want_keys: BTreeMap<_, &Rule> = want.iter().map(|r| (r.key(), r)).collect();
    let add: Vec<IpPermission> = want
        .iter()
        .filter(|r| !have_keys.contains_key(&r.key()))
        .map(permission)
        .collect();
    let remove: Vec<IpPermission> = have
        .iter()
        .filter(|r| !want_keys.contains_key(&r.key()))
        .map(permission)
        .collect();
    let redescribe: Vec<IpPermission> = want
        .iter()
        .filter(|r| {
            have_keys
                .get(&r.key())
                .is_some_and(|h| h.description != r.description)
        })
        .map(permission)
        .collect();
    let ec2 = cx.aws.ec2();
    if !add.is_empty() {
        let sent = match dir {
            Direction::Ingress => ec2
                .authorize_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(add))
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err),
            Direction::Egress => ec2
                .authorize_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(add))
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err),
        };
        // A retried call whose first attempt succeeded finds its rules there already.
        match sent {
            Err(e) if !e.is("InvalidPermission.Duplicate") => return Err(e),
            _ => {}
        }
    }
    if !remove.is_empty() {
        let sent = match dir {
            Direction::Ingress => ec2
                .revoke_security_group_ingress()
                .group_id(id)
                .set_ip_permissions(Some(remove))
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err),
            Direction::Egress => ec2
                .revoke_security_group_egress()
                .group_id(id)
                .set_ip_permissions(Some(remove))
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err),
        };
        match sent {
            Err(e) if !e.is("InvalidPermission.NotFound") => return Err(e),
            _ => {}
        }
    }
    if !redescribe.is_empty() {
        match dir {
            Direction::Ingress => ec2
                .update_security_group_rule_descriptions_ingress()
                .group_id(id)
                .set_ip_permissions(Some(redescribe))
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err)?,
            Direction::Egress => ec2
                .update_security_group_rule_descriptions_egress()
                .group_id(id)
                .set_ip_permissions(Some(redescribe))
                .send()
                .await
                .map(|_| ())
                .map_err(aws_err)?,
        }
    }
    Ok(())
}

/// The stack's tags: everything but Stackwright's ownership tags.
fn user_tags(g: &Ec2Group) -> BTreeMap<String, String> {
    g.tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .filter(|(k, _)| !k.starts_with("stackwright:"))
        .collect()
}

async fn sync_tags(
    aws: &Aws,
    id: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
) -> Result<()> {
    let (set, unset) = super::toolkit::tag_changes(have, want);
    let set: Vec<Tag> = set
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    let unset: Vec<Tag> = unset
        .into_iter()
        .map(|k| Tag::builder().key(k).build())
        .collect();
    if !set.is_empty() {
        aws.ec2()
            .create_tags()
            .resources(id)
            .set_tags(Some(set))
            .send()
            .await
            .map_err(aws_err)?;
    }
    if !unset.is_empty() {
        aws.ec2()
            .delete_tags()
            .resources(id)
            .set_tags(Some(unset))
            .send()
            .await
            .map_err(aws_err)?;
    }
    Ok(())
}

fn live_of(g: &Ec2Group) -> Live {
    let id = g.group_id().unwrap_or_default().to_owned();
    let mut a = Attrs::new();
    a.insert("name".into(), json!(g.group_name().unwrap_or_default()));
    a.insert(
        "description".into(),
        json!(g.description().unwrap_or_default()),
    );
    if let Some(vpc) = g.vpc_id() {
        a.insert("vpc".into(), json!(vpc));
    }
    a.insert(
        "ingress".into(),
        rules_value(&group_rules(g, Direction::Ingress)),
    );
    a.insert(
        "egress".into(),
        rules_value(&group_rules(g, Direction::Egress)),
    );
    a.insert("tags".into(), tags_value(&user_tags(g)));
    a.insert("id".into(), json!(id));
    if let Some(owner) = g.owner_id() {
        a.insert("owner_id".into(), json!(owner));
    }
    if let Some(arn) = g.security_group_arn() {
        a.insert("arn".into(), json!(arn));
    }
    Live {
        id,
        attrs: a,
        private: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn blocks_flatten_into_one_sorted_set_whatever_the_spelling() {
        let a = json!([
            { "protocol": "tcp", "port": 443, "cidr_blocks": ["10.0.0.0/8", "0.0.0.0/0"] },
            { "protocol": "all", "cidr_blocks": ["0.0.0.0/0"] },
        ]);
        let b = json!([
            { "protocol": "-1", "cidr_blocks": ["0.0.0.0/0"] },
            { "protocol": "6", "from_port": 443, "to_port": 443, "cidr_blocks": ["0.0.0.0/0"] },
            { "protocol": "TCP", "port": 443, "cidr_blocks": ["10.0.0.0/8"], "description": "" },
        ]);
        let p = SecurityGroup;
        assert_eq!(p.canonical("ingress", &a), p.canonical("ingress", &b));
        assert_eq!(
            p.canonical("ingress", &a),
            json!([
                { "protocol": "all", "cidr_blocks": ["0.0.0.0/0"] },
                { "protocol": "tcp", "port": 443, "cidr_blocks": ["0.0.0.0/0"] },
                { "protocol": "tcp", "port": 443, "cidr_blocks": ["10.0.0.0/8"] },
            ])
        );
        // ICMP of every type is -1/-1 at AWS and no ports in the stack.
        let icmp = json!([{ "protocol": "icmp", "from_port": -1, "to_port": -1, "cidr_blocks": ["0.0.0.0/0"] }]);
        assert_eq!(
            p.canonical("egress", &icmp),
            json!([{ "protocol": "icmp", "cidr_blocks": ["0.0.0.0/0"] }])
        );
        assert_eq!(p.canonical("name", &json!("x")), json!("x"));
    }

    #[test]
    fn rule_keys_ignore_descriptions() {
        let with =
            rules_of(&json!([{ "port": 80, "cidr_blocks": ["0.0.0.0/0"], "description": "a" }]))
                .unwrap();
        let without = rules_of(&json!([{ "port": 80, "cidr_blocks": ["0.0.0.0/0"] }])).unwrap();
        assert_eq!(with[0].key(), without[0].key());
        assert_ne!(with, without);
    }

    #[test]
    fn blocks_are_checked_for_shape_with_unknown_values_allowed() {
        // A reference (null at load) counts as a source, its value is checked at plan.
        assert!(
            check_block(&json!({ "protocol": "tcp", "port": 80, "source_security_group": null }))
                .is_ok()
        );
        assert!(
            check_block(&json!({ "protocol": "tcp", "port": 80, "cidr_blocks": [null] })).is_ok()
        );
        let err =
            check_block(&json!({ "protocol": "tcp", "port": 80, "cidr_blocks": [] })).unwrap_err();
        assert!(err.contains("found none"), "{err}");
        assert!(check_block(&json!({ "protocol": "50", "cidr_blocks": ["0.0.0.0/0"] })).is_ok());
        assert!(check_block(&json!({ "protocol": "udp", "from_port": 53, "to_port": 53, "ipv6_cidr_blocks": ["::/0"] })).is_ok());
        assert!(
            check_block(&json!({ "protocol": "tcp", "port": 80, "ipv6_cidr_blocks": ["::/129"] }))
                .is_err()
        );
        assert!(check_block(&json!({ "protocol": "tcp", "port": 80, "from_port": 80, "cidr_blocks": ["0.0.0.0/0"] })).is_err());
    }
}
