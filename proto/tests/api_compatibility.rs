//! The public contracts are what other internal teams build against: this test compares the
//! compiled descriptor set with the committed snapshot (`proto/api-snapshot.txt`) and fails on a
//! breaking change (a field removed, renumbered, renamed or retyped; an enum value or an RPC
//! removed or changed) unless the snapshot is deliberately updated, and asks for additions to be
//! recorded so they are protected from then on.
//!
//! - `CRS_API_SNAPSHOT=update cargo test -p crs-proto --test api_compatibility` records additions;
//! - `CRS_API_SNAPSHOT=accept-breaking ...` records a breaking change too (a new major version is
//!   the better answer).

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

const SNAPSHOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/api-snapshot.txt");

/// One element of the API, by a stable key, with the signature that must not change.
fn elements() -> BTreeMap<String, String> {
    let fds = FileDescriptorSet::decode(crs_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut out = BTreeMap::new();
    for file in fds.file.iter().filter(|f| f.package().starts_with("crs.")) {
        let package = file.package();
        for m in &file.message_type {
            message(&mut out, &format!("{package}.{}", m.name()), m);
        }
        for e in &file.enum_type {
            for v in &e.value {
                out.insert(format!("enum {package}.{} = {}", e.name(), v.number()), v.name().to_owned());
            }
        }
        for s in &file.service {
            out.insert(format!("service {package}.{}", s.name()), String::new());
            for m in &s.method {
                out.insert(
                    format!("rpc {package}.{}/{}", s.name(), m.name()),
                    format!(
                        "{}{} -> {}{}",
                        if m.client_streaming() { "stream " } else { "" },
                        m.input_type(),
                        if m.server_streaming() { "stream " } else { "" },
                        m.output_type()
                    ),
                );
            }
        }
    }
    out
}

fn message(out: &mut BTreeMap<String, String>, name: &str, m: &DescriptorProto) {
    out.insert(format!("message {name}"), String::new());
    for f in &m.field {
        let ty = match f.r#type() {
            Type::Message | Type::Enum | Type::Group => f.type_name().to_owned(),
            other => other.as_str_name().trim_start_matches("TYPE_").to_lowercase(),
        };
        let label = match f.label() {
            Label::Repeated => "repeated ",
            _ if f.proto3_optional() => "optional ",
            _ => "",
        };
        out.insert(format!("field {name} = {}", f.number()), format!("{label}{ty} {}", f.name()));
    }
    for nested in &m.nested_type {
        message(out, &format!("{name}.{}", nested.name()), nested);
    }
    for e in &m.enum_type {
        for v in &e.value {
            out.insert(format!("enum {name}.{} = {}", e.name(), v.number()), v.name().to_owned());
        }
    }
}

fn render(elements: &BTreeMap<String, String>) -> String {
    let mut text =
        String::from("# The public API of CRS, checked by proto/tests/api_compatibility.rs. Do not edit by hand.\n");
    for (k, v) in elements {
        if v.is_empty() {
            text.push_str(&format!("{k}\n"));
        } else {
            text.push_str(&format!("{k}: {v}\n"));
        }
    }
    text
}

fn parse(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| match l.split_once(": ") {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

/// What changed from `recorded` to `now`: the breaking changes, and the additions.
fn diff(recorded: &BTreeMap<String, String>, now: &BTreeMap<String, String>) -> (Vec<String>, Vec<String>) {
    let mut breaking = Vec::new();
    for (key, was) in recorded {
        match now.get(key) {
            None => breaking.push(format!("removed: {key}: {was}")),
            Some(is) if is != was => breaking.push(format!("changed: {key}: {was} => {is}")),
            Some(_) => {}
        }
    }
    let added = now.keys().filter(|k| !recorded.contains_key(*k)).cloned().collect();
    (breaking, added)
}

#[test]
fn the_public_api_changes_only_by_additions() {
    let now = elements();
    let recorded = std::fs::read_to_string(SNAPSHOT).map(|t| parse(&t)).unwrap_or_default();
    let (breaking, added) = diff(&recorded, &now);
    let mode = std::env::var("CRS_API_SNAPSHOT").unwrap_or_default();
    if mode == "accept-breaking" || (mode == "update" && breaking.is_empty()) {
        std::fs::write(SNAPSHOT, render(&now)).expect("write the snapshot");
        return;
    }
    assert!(
        breaking.is_empty(),
        "breaking changes to the public API:\n  {}\n(if deliberate: CRS_API_SNAPSHOT=accept-breaking)",
        breaking.join("\n  ")
    );
    assert!(
        added.is_empty(),
        "additions not yet recorded in proto/api-snapshot.txt:\n  {}\n(record them: CRS_API_SNAPSHOT=update)",
        added.join("\n  ")
    );
}

#[test]
fn removed_renumbered_retyped_fields_and_removed_rpcs_are_breaking_additions_are_not() {
    let recorded = parse(&render(&elements()));
    let mut now = recorded.clone();
    // Renumber Item.url (2 -> 42), retype Item.index, drop an RPC, add a field.
    let url = now.remove("field crs.common.v1.Item = 2").expect("Item.url is field 2");
    now.insert("field crs.common.v1.Item = 42".into(), url);
    now.insert("field crs.common.v1.Item = 1".into(), "string index".into());
    now.remove("rpc crs.intake.v1.IntakeService/SubmitRequest").expect("SubmitRequest exists");
    now.insert("field crs.common.v1.Item = 43".into(), "string added".into());
    let (breaking, added) = diff(&recorded, &now);
    assert_eq!(breaking.len(), 3, "{breaking:#?}");
    assert!(breaking.iter().any(|b| b.starts_with("removed: field crs.common.v1.Item = 2")));
    assert!(breaking.iter().any(|b| b.starts_with("changed: field crs.common.v1.Item = 1")));
    assert!(breaking.iter().any(|b| b.starts_with("removed: rpc crs.intake.v1.IntakeService/SubmitRequest")));
    assert_eq!(added, ["field crs.common.v1.Item = 42", "field crs.common.v1.Item = 43"]);
}
