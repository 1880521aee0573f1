//! Data categories from the proto schema.
//!
//! Every payload field carries a `(hub.v1.category)` option; categories compose along the path
//! (`survivor` + `address` = `survivor.address`). This module reads them once at start-up and
//! walks payloads as dynamic messages, so minimisation follows the schema and the policy
//! without a hand-written list per message.

use std::collections::{BTreeSet, HashMap};

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, FieldDescriptor, Kind as FieldKind, MessageDescriptor, Value};
use proto::v1::Payload;

use crate::IspError;

/// The payload schema with each field's own category segment.
#[derive(Clone)]
pub struct Schema {
    payload: MessageDescriptor,
    /// Field full name -> its own category segment (absent: inherits the parent's).
    segments: HashMap<String, String>,
    /// Every category a leaf of some payload can have.
    categories: BTreeSet<String>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("categories", &self.categories.len()).finish()
    }
}

fn compose(prefix: &str, segment: Option<&String>) -> String {
    match segment {
        None => prefix.to_owned(),
        Some(s) if prefix.is_empty() => s.clone(),
        Some(s) => format!("{prefix}.{s}"),
    }
}

impl Schema {
    /// Loads the compiled hub.v1 schema and checks that every leaf of every payload has a
    /// category: a field without one could never be minimised, so it is a build error.
    pub fn load() -> Result<Schema, IspError> {
        let invalid = |detail: String| IspError::Invalid { what: "the hub.v1 schema".into(), detail };
        let pool = DescriptorPool::decode(proto::DESCRIPTOR_SET).map_err(|e| invalid(e.to_string()))?;
        let ext = pool
            .get_extension_by_name(proto::CATEGORY_EXTENSION)
            .ok_or_else(|| invalid("no hub.v1.category option".into()))?;
        let payload = pool
            .get_message_by_name(proto::PAYLOAD_MESSAGE)
            .ok_or_else(|| invalid("no hub.v1.Payload message".into()))?;
        let mut segments = HashMap::new();
        for message in pool.all_messages().filter(|m| m.package_name() == "hub.v1") {
            for field in message.fields() {
                let options = field.options();
                if options.has_extension(&ext) {
                    if let Some(s) = options.get_extension(&ext).as_str() {
                        segments.insert(field.full_name().to_owned(), s.to_owned());
                    }
                }
            }
        }
        let mut schema = Schema { payload, segments, categories: BTreeSet::new() };
        let mut categories = BTreeSet::new();
        let mut missing = Vec::new();
        schema.leaf_categories(&schema.payload.clone(), "", 0, &mut categories, &mut missing);
        if !missing.is_empty() {
            return Err(invalid(format!("payload fields without a data category: {}", missing.join(", "))));
        }
        schema.categories = categories;
        Ok(schema)
    }

    fn leaf_categories(
        &self,
        message: &MessageDescriptor,
        prefix: &str,
        depth: usize,
        out: &mut BTreeSet<String>,
        missing: &mut Vec<String>,
    ) {
        for field in message.fields() {
            let category = compose(prefix, self.segments.get(field.full_name()));
            match field.kind() {
                FieldKind::Message(inner) if depth < 8 => self.leaf_categories(&inner, &category, depth + 1, out, missing),
                _ if category.is_empty() => missing.push(field.full_name().to_owned()),
                _ => {
                    out.insert(category);
                }
            }
        }
    }

    /// Every category some payload field can carry (the vocabulary the policy may name).
    pub fn categories(&self) -> &BTreeSet<String> {
        &self.categories
    }

    /// Every category a payload of one kind can carry: what `hub policy explain` lists.
    pub fn kind_categories(&self, kind: crate::Kind) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(field) = self.payload.get_field(kind as u32) else { return out };
        let category = compose("", self.segments.get(field.full_name()));
        if let FieldKind::Message(inner) = field.kind() {
            self.leaf_categories(&inner, &category, 1, &mut out, &mut Vec::new());
        }
        out
    }

    /// The message of one kind's body (`hub.v1.IdvaReferral` for `housing.idva_referral`) and
    /// its category: what the console builds its forms from.
    pub fn body(&self, kind: crate::Kind) -> Option<(MessageDescriptor, String)> {
        let field = self.payload.get_field(kind as u32)?;
        let category = compose("", self.segments.get(field.full_name()));
        match field.kind() {
            FieldKind::Message(inner) => Some((inner, category)),
            _ => None,
        }
    }

    /// The category of `field` inside a message whose category is `prefix`.
    pub fn field_category(&self, prefix: &str, field: &FieldDescriptor) -> String {
        compose(prefix, self.segments.get(field.full_name()))
    }

    /// The payload as a dynamic message, for walking by category.
    pub fn to_dynamic(&self, payload: &Payload) -> DynamicMessage {
        let mut dynamic = DynamicMessage::new(self.payload.clone());
        dynamic
            .transcode_from(payload)
            .expect("a typed Payload always transcodes to its own descriptor");
        dynamic
    }

    /// Decodes a payload from the protobuf JSON mapping (camelCase or proto field names,
    /// enum names), as the HTTP APIs accept it.
    pub fn payload_from_json(&self, json: &serde_json::Value) -> Result<Payload, String> {
        let dynamic = DynamicMessage::deserialize(self.payload.clone(), json).map_err(|e| e.to_string())?;
        Ok(Payload::decode(dynamic.encode_to_vec().as_slice()).map_err(|e| e.to_string())?)
    }

    /// The payload in the protobuf JSON mapping, for the HTTP APIs.
    pub fn payload_to_json(&self, payload: &Payload) -> serde_json::Value {
        let options = prost_reflect::SerializeOptions::new().stringify_64_bit_integers(false);
        let dynamic = self.to_dynamic(payload);
        dynamic
            .serialize_with_options(serde_json::value::Serializer, &options)
            .unwrap_or(serde_json::Value::Null)
    }

    /// The categories a payload actually carries (fields holding a non-default value).
    pub fn present(&self, payload: &Payload) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        self.walk_present(&self.to_dynamic(payload), "", &mut out);
        out
    }

    fn walk_present(&self, message: &DynamicMessage, prefix: &str, out: &mut BTreeSet<String>) {
        for (field, value) in message.fields() {
            let category = compose(prefix, self.segments.get(field.full_name()));
            self.walk_value(&field, value, &category, out);
        }
    }

    fn walk_value(&self, field: &FieldDescriptor, value: &Value, category: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Message(inner) => self.walk_present(inner, category, out),
            Value::List(items) => {
                for item in items {
                    self.walk_value(field, item, category, out);
                }
            }
            v if v.is_default_for_field(field) => {}
            _ => {
                out.insert(category.to_owned());
            }
        }
    }

    /// Removes every field whose category `allowed` rejects; returns the payload that is
    /// left and the categories removed.
    pub fn minimise(&self, payload: &Payload, allowed: &dyn Fn(&str) -> bool) -> (Payload, BTreeSet<String>) {
        let mut dynamic = self.to_dynamic(payload);
        let mut removed = BTreeSet::new();
        self.strip(&mut dynamic, "", allowed, &mut removed);
        let minimised = dynamic
            .transcode_to::<Payload>()
            .expect("a dynamic Payload always transcodes back to the typed one");
        (minimised, removed)
    }

    fn strip(&self, message: &mut DynamicMessage, prefix: &str, allowed: &dyn Fn(&str) -> bool, removed: &mut BTreeSet<String>) {
        let fields: Vec<FieldDescriptor> = message.fields().map(|(f, _)| f).collect();
        for field in fields {
            let category = compose(prefix, self.segments.get(field.full_name()));
            if matches!(field.kind(), FieldKind::Message(_)) {
                // A message left with nothing in it goes too: an empty section would still
                // tell the recipient that the sender had one (SPEC.md section 6.3 step 4).
                let emptied = match message.get_field_mut(&field) {
                    Value::Message(inner) => {
                        self.strip(inner, &category, allowed, removed);
                        inner.fields().next().is_none()
                    }
                    Value::List(items) => {
                        for item in items.iter_mut() {
                            if let Value::Message(inner) = item {
                                self.strip(inner, &category, allowed, removed);
                            }
                        }
                        items.retain(|item| !matches!(item, Value::Message(inner) if inner.fields().next().is_none()));
                        items.is_empty()
                    }
                    _ => false,
                };
                if emptied {
                    message.clear_field(&field);
                }
            } else if !allowed(&category) {
                let value = message.get_field(&field);
                let present = match value.as_ref() {
                    Value::List(items) => !items.is_empty(),
                    v => !v.is_default_for_field(&field),
                };
                if present {
                    removed.insert(category);
                }
                message.clear_field(&field);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::v1::{payload::Body, IdvaReferral, Person};

    fn referral() -> Payload {
        Payload {
            body: Some(Body::IdvaReferral(IdvaReferral {
                survivor: Some(Person {
                    full_name: "Synthetic Alice Example".into(),
                    address: "1 Synthetic Street".into(),
                    phone: "07000 000000".into(),
                    ..Default::default()
                }),
                reason: "test".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn every_leaf_has_a_category_and_known_ones_are_there() {
        let schema = Schema::load().unwrap();
        for c in ["survivor.address", "survivor.contact", "perpetrator.identity", "risk.dash", "children.school", "move.areas"] {
            assert!(schema.categories().contains(c), "{c} missing from {:?}", schema.categories());
        }
    }

    #[test]
    fn present_categories_follow_the_path() {
        let schema = Schema::load().unwrap();
        let present: Vec<_> = schema.present(&referral()).into_iter().collect();
        assert_eq!(present, ["referral.narrative", "survivor.address", "survivor.contact", "survivor.identity"]);
    }

    #[test]
    fn minimise_removes_only_disallowed_fields() {
        let schema = Schema::load().unwrap();
        let (out, removed) = schema.minimise(&referral(), &|c| !c.starts_with("survivor.") || c == "survivor.identity");
        assert_eq!(removed.into_iter().collect::<Vec<_>>(), ["survivor.address", "survivor.contact"]);
        let Some(Body::IdvaReferral(r)) = out.body else { panic!("body lost") };
        let survivor = r.survivor.unwrap();
        assert_eq!(survivor.full_name, "Synthetic Alice Example");
        assert!(survivor.address.is_empty() && survivor.phone.is_empty());
        assert_eq!(r.reason, "test");
    }

    #[test]
    fn a_message_minimisation_empties_is_removed_whole() {
        let schema = Schema::load().unwrap();
        let mut payload = referral();
        if let Some(Body::IdvaReferral(r)) = &mut payload.body {
            r.perpetrators = vec![Person { address: "2 Synthetic Road".into(), ..Default::default() }, Person { full_name: "Synthetic Harmer".into(), ..Default::default() }];
        }
        let (out, removed) = schema.minimise(&payload, &|c| !c.starts_with("survivor.") && c != "perpetrator.address");
        assert!(removed.contains("survivor.identity") && removed.contains("perpetrator.address"));
        let Some(Body::IdvaReferral(r)) = out.body else { panic!("body lost") };
        assert_eq!(r.survivor, None, "an emptied section would still say the sender had one");
        assert_eq!(r.perpetrators.len(), 1, "an emptied element of a list goes too");
        assert_eq!(r.perpetrators[0].full_name, "Synthetic Harmer");
    }

    #[test]
    fn json_round_trip() {
        let schema = Schema::load().unwrap();
        let json = schema.payload_to_json(&referral());
        assert_eq!(json["idvaReferral"]["survivor"]["fullName"], "Synthetic Alice Example");
        let back = schema.payload_from_json(&json).unwrap();
        assert_eq!(back, referral());
        let err = schema.payload_from_json(&serde_json::json!({"idvaReferral": {"nope": 1}})).unwrap_err();
        assert!(err.contains("nope"), "{err}");
    }
}
