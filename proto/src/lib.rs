//! The hub.v1 wire format, generated from proto/hub/v1 by prost.
//!
//! `hub::v1` holds the envelope and its clear header, the signed events (near misses and
//! quarantines) and one typed payload per message kind. [`DESCRIPTOR_SET`] is the encoded
//! descriptor set, which the isp crate reflects over to read each field's data category.

pub mod hub {
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/hub.v1.rs"));
    }
}

pub use hub::v1;

/// Encoded `google.protobuf.FileDescriptorSet` of hub/v1 and its imports.
pub const DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hub_v1_descriptor.bin"));

/// Full protobuf name of the sealed payload message.
pub const PAYLOAD_MESSAGE: &str = "hub.v1.Payload";

/// Full protobuf name of the field option that carries a field's data category.
pub const CATEGORY_EXTENSION: &str = "hub.v1.category";
