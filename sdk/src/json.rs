//! The gateway's `json` interface (WIT 0.1.1): a strict JSON check and an index of an
//! object's top-level members, done natively by the gateway.
//!
//! A Rust plugin parses JSON fast on its own (`serde_json`); this exists for what a
//! plugin cannot cheaply do itself — check a body strictly and find where each
//! top-level value sits, so one field can be replaced without re-encoding the rest.

use std::ops::Range;

use crate::mapper::bindings::weir::plugin::json as imports;

/// One top-level member of a JSON object, as byte ranges into the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key's characters between its quotes, as written (escapes not decoded).
    pub key: Range<usize>,
    /// The member's value.
    pub value: Range<usize>,
}

/// The top-level members of a JSON object and where it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectIndex {
    /// The members in document order (a repeated key appears each time).
    pub members: Vec<Member>,
    /// The offset of the object's closing `}`.
    pub close: usize,
}

/// Checks that `document` is exactly one JSON object — RFC 8259, valid UTF-8, at most
/// 64 levels of nesting, only whitespace around it — and indexes its top-level
/// members; `None` when it is anything else. Runs in the gateway, not the plugin.
pub fn index_object(document: &[u8]) -> Option<ObjectIndex> {
    let ix = imports::index_object(document)?;
    let at = |n: u32| n as usize;
    Some(ObjectIndex {
        members: ix
            .members
            .into_iter()
            .map(|m| Member {
                key: at(m.key_start)..at(m.key_end),
                value: at(m.value_start)..at(m.value_end),
            })
            .collect(),
        close: at(ix.close),
    })
}
