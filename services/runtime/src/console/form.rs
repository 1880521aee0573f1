//! Forms built from the typed payload schema: one field per field of a kind's body message,
//! each labelled with its data category, and the posted form turned back into the payload's
//! protobuf JSON. A new field in `proto/hub/v1/payloads.proto` appears in the console with
//! no change here.
//!
//! Field names are the payload's JSON path under `p.` (`p.survivor.fullName`); one entry of
//! a repeated message is `p.perpetrators.0.fullName`; a repeated string is one per line.

use prost_reflect::{FieldDescriptor, Kind as FieldKind, MessageDescriptor};
use serde_json::{Map, Value};

use super::{Markup, html};

/// How deep nested messages are shown: the payloads nest three levels at most.
const DEPTH: usize = 3;

/// The fields of a posted form, in order (a name may repeat: checkboxes).
#[derive(Debug, Default, Clone)]
pub struct Fields(pub Vec<(String, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    /// Every field but the CSRF token, to carry a form on to its next step in hidden inputs.
    pub fn hidden(&self) -> Markup {
        html! {
            @for (k, v) in self.0.iter().filter(|(k, _)| k != super::CSRF_FIELD) {
                input type="hidden" name=(k) value=(v);
            }
        }
    }
}

/// `survivor_aware` → "Survivor aware".
pub fn humanise(name: &str) -> String {
    let mut text = name.replace('_', " ");
    if let Some(first) = text.get(0..1) {
        let upper = first.to_uppercase();
        text.replace_range(0..1, &upper);
    }
    text
}

/// The HTML id of a field name.
pub fn id(name: &str) -> String {
    name.replace('.', "-")
}

/// An enum value's name for people: `RISK_LEVEL_HIGH` of `RiskLevel` → "High".
fn enum_label(enum_name: &str, value: &str) -> String {
    let mut prefix = String::new();
    for (i, c) in enum_name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            prefix.push('_');
        }
        prefix.push(c.to_ascii_uppercase());
    }
    prefix.push('_');
    humanise(&value.strip_prefix(&prefix).unwrap_or(value).to_lowercase())
}

/// A free-text field that takes more than a line.
fn long_text(field: &FieldDescriptor) -> bool {
    let n = field.name();
    ["reason", "summary", "notes", "narrative", "details", "outcome", "people_safe_to_talk_to", "people_unsafe_to_talk_to", "description", "actions"]
        .iter()
        .any(|w| n == *w || n.ends_with(&format!("_{w}")))
}

fn date_like(field: &FieldDescriptor) -> bool {
    let n = field.name();
    n.contains("date") || n.ends_with("_on")
}

/// Whether a message can be shown as one fieldset: no repeated messages inside it.
fn flat(message: &MessageDescriptor) -> bool {
    message.fields().all(|f| !(f.is_list() && matches!(f.kind(), FieldKind::Message(_))))
}

/// The fields of `message` (a body, or a part of one), named under `name`, for a category
/// `category`, filled from `values`.
/// A part of a payload the service fills in, never the form: the DASH summary comes from
/// the recorded assessment the send names.
fn filled_by_service(message: &MessageDescriptor) -> bool {
    message.full_name() == "hub.v1.DashAssessment"
}

pub fn fields(schema: &isp::Schema, message: &MessageDescriptor, name: &str, category: &str, values: &Fields, depth: usize) -> Markup {
    html! {
        @for field in message.fields() {
            @let fname = format!("{name}.{}", field.json_name());
            @let fcat = schema.field_category(category, &field);
            @let label = humanise(field.name());
            @let tag = html! { span.category { "category: " (fcat) } };
            @match (field.kind(), field.is_list()) {
                (FieldKind::Message(inner), _) if filled_by_service(&inner) => {}
                (FieldKind::Message(inner), false) if depth < DEPTH => {
                    fieldset {
                        legend { (label) " " (tag) }
                        (fields(schema, &inner, &fname, &fcat, values, depth + 1))
                    }
                }
                (FieldKind::Message(inner), true) if depth < DEPTH && flat(&inner) => {
                    fieldset {
                        legend { (label) " " (tag) }
                        span.hint { "One entry; leave it empty for none." }
                        (fields(schema, &inner, &format!("{fname}.0"), &fcat, values, depth + 1))
                    }
                }
                (FieldKind::Message(_), _) => {}
                (FieldKind::Enum(e), false) => {
                    div.field {
                        label for=(id(&fname)) { (label) " " (tag) }
                        select id=(id(&fname)) name=(fname) {
                            @for v in e.values() {
                                @let value = if v.number() == 0 { String::new() } else { v.name().to_owned() };
                                option value=(value) selected[values.get(&fname) == value] { (if v.number() == 0 { "Not given".to_owned() } else { enum_label(e.name(), v.name()) }) }
                            }
                        }
                    }
                }
                (FieldKind::Enum(e), true) => {
                    fieldset {
                        legend { (label) " " (tag) }
                        div.choices {
                            @for (i, v) in e.values().filter(|v| v.number() != 0).enumerate() {
                                div.choice {
                                    input type="checkbox" id=(format!("{}-{i}", id(&fname))) name=(fname) value=(v.name()) checked[values.all(&fname).contains(&v.name())];
                                    label for=(format!("{}-{i}", id(&fname))) { (enum_label(e.name(), v.name())) }
                                }
                            }
                        }
                    }
                }
                (FieldKind::Bool, false) => {
                    div.field {
                        div.choice {
                            input type="checkbox" id=(id(&fname)) name=(fname) value="true" checked[values.get(&fname) == "true"];
                            label for=(id(&fname)) { (label) " " (tag) }
                        }
                    }
                }
                (FieldKind::String, true) => {
                    div.field {
                        label for=(id(&fname)) { (label) " " (tag) }
                        span.hint id=(format!("{}-hint", id(&fname))) { "One per line." }
                        textarea id=(id(&fname)) name=(fname) rows="3" aria-describedby=(format!("{}-hint", id(&fname))) { (values.get(&fname)) }
                    }
                }
                (FieldKind::String, false) if long_text(&field) => {
                    div.field {
                        label for=(id(&fname)) { (label) " " (tag) }
                        textarea id=(id(&fname)) name=(fname) rows="4" { (values.get(&fname)) }
                    }
                }
                (FieldKind::String, false) => {
                    div.field {
                        label for=(id(&fname)) { (label) " " (tag) }
                        @if date_like(&field) {
                            span.hint id=(format!("{}-hint", id(&fname))) { "For example, 1990-01-31" }
                            input.short type="text" id=(id(&fname)) name=(fname) value=(values.get(&fname)) aria-describedby=(format!("{}-hint", id(&fname)));
                        } @else {
                            input type="text" id=(id(&fname)) name=(fname) value=(values.get(&fname));
                        }
                    }
                }
                (FieldKind::Int32 | FieldKind::Int64 | FieldKind::Uint32 | FieldKind::Uint64 | FieldKind::Sint32 | FieldKind::Sint64, false) => {
                    div.field {
                        label for=(id(&fname)) { (label) " " (tag) }
                        input type="number" id=(id(&fname)) name=(fname) value=(values.get(&fname)) inputmode="numeric";
                    }
                }
                _ => {}
            }
        }
    }
}

/// The body's JSON from the posted fields under `name`; problems are (field id, message).
/// Fields left empty are left out.
pub fn collect(message: &MessageDescriptor, name: &str, values: &Fields, depth: usize, problems: &mut Vec<(String, String)>) -> Map<String, Value> {
    let mut out = Map::new();
    for field in message.fields() {
        let fname = format!("{name}.{}", field.json_name());
        let value = match (field.kind(), field.is_list()) {
            (FieldKind::Message(inner), _) if filled_by_service(&inner) => None,
            (FieldKind::Message(inner), false) if depth < DEPTH => Some(collect(&inner, &fname, values, depth + 1, problems)).filter(|m| !m.is_empty()).map(Value::Object),
            (FieldKind::Message(inner), true) if depth < DEPTH && flat(&inner) => {
                Some(collect(&inner, &format!("{fname}.0"), values, depth + 1, problems)).filter(|m| !m.is_empty()).map(|m| Value::Array(vec![Value::Object(m)]))
            }
            (FieldKind::Enum(_), true) => Some(values.all(&fname)).filter(|v| !v.is_empty()).map(|v| Value::Array(v.into_iter().map(|s| Value::String(s.to_owned())).collect())),
            (FieldKind::String, true) => {
                let lines: Vec<Value> = values.get(&fname).lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| Value::String(l.to_owned())).collect();
                Some(lines).filter(|l| !l.is_empty()).map(Value::Array)
            }
            (FieldKind::Bool, false) => (values.get(&fname) == "true").then_some(Value::Bool(true)),
            (FieldKind::Enum(_) | FieldKind::String, false) => Some(values.get(&fname).trim()).filter(|v| !v.is_empty()).map(|v| Value::String(v.to_owned())),
            (FieldKind::Int32 | FieldKind::Int64 | FieldKind::Uint32 | FieldKind::Uint64 | FieldKind::Sint32 | FieldKind::Sint64, false) => {
                let text = values.get(&fname).trim();
                if text.is_empty() {
                    None
                } else if let Ok(n) = text.parse::<i64>() {
                    Some(Value::from(n))
                } else {
                    problems.push((id(&fname), format!("{}: enter a whole number", humanise(field.name()))));
                    None
                }
            }
            _ => None,
        };
        if let Some(v) = value {
            out.insert(field.json_name().to_owned(), v);
        }
    }
    out
}

/// A payload body's JSON (as the API shows it) as nested summary lists, for reading a
/// referral: each field labelled by its name in the schema, enum values by their names for
/// people.
pub fn show(message: &MessageDescriptor, value: &Value) -> Markup {
    let Value::Object(map) = value else { return show_plain(value) };
    html! {
        dl.summary {
            @for (key, v) in map {
                @let field = message.fields().find(|f| f.json_name() == key.as_str() || f.name() == key.as_str());
                div {
                    dt { (field.as_ref().map(|f| humanise(f.name())).unwrap_or_else(|| key.clone())) }
                    dd {
                        @match field.as_ref().map(|f| f.kind()) {
                            Some(FieldKind::Message(inner)) => {
                                @match v {
                                    Value::Array(items) => { @for item in items { (show(&inner, item)) } }
                                    other => { (show(&inner, other)) }
                                }
                            }
                            Some(FieldKind::Enum(e)) => {
                                @match v {
                                    Value::Array(items) => { (items.iter().map(|i| enum_label(e.name(), i.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")) }
                                    other => { (enum_label(e.name(), other.as_str().unwrap_or_default())) }
                                }
                            }
                            _ => { (show_plain(v)) }
                        }
                    }
                }
            }
        }
    }
}

fn show_plain(value: &Value) -> Markup {
    html! {
        @match value {
            Value::Array(items) => { @for (i, item) in items.iter().enumerate() { @if i > 0 { br; } (show_plain(item)) } }
            Value::Bool(b) => { (if *b { "Yes" } else { "No" }) }
            Value::String(s) => { (s) }
            Value::Null => { "–" }
            other => { (other.to_string()) }
        }
    }
}

/// A kind's name for people: `housing.idva_referral` → "Housing IDVA referral",
/// `perpetrator.referral` → "Perpetrator referral".
pub fn kind_label(name: &str) -> String {
    humanise(&name.replace('.', "_")).replace("Idva", "IDVA").replace("Marac", "MARAC").replace("idva", "IDVA").replace("marac", "MARAC")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_posted_form_becomes_the_payload_json() {
        let schema = isp::Schema::load().expect("schema");
        let (body, _) = schema.body(isp::Kind::PerpetratorReferral).expect("a body");
        let values = Fields(vec![
            ("p.survivor.fullName".into(), "Synthetic Person".into()),
            ("p.survivor.address".into(), "1 Synthetic Lane".into()),
            ("p.children.0.fullName".into(), "Synthetic Child".into()),
            ("p.risk".into(), "RISK_LEVEL_HIGH".into()),
            ("p.reason".into(), "  ".into()),
        ]);
        let mut problems = Vec::new();
        let json = collect(&body, "p", &values, 0, &mut problems);
        assert!(problems.is_empty());
        assert_eq!(
            Value::Object(json),
            serde_json::json!({"survivor": {"fullName": "Synthetic Person", "address": "1 Synthetic Lane"}, "children": [{"fullName": "Synthetic Child"}], "risk": "RISK_LEVEL_HIGH"})
        );
        let page = fields(&schema, &body, "p", "", &values, 0).into_string();
        assert!(page.contains("category: survivor.address"), "every field is labelled with its category");
        assert!(page.contains("value=\"1 Synthetic Lane\""), "values are kept");
    }

    #[test]
    fn labels_read_as_words() {
        assert_eq!(humanise("survivor_aware"), "Survivor aware");
        assert_eq!(enum_label("RiskLevel", "RISK_LEVEL_HIGH"), "High");

    }
}
