//! Loading and replacing plugins and config while the gateway serves.

/// `stamp-v1` is used here.
pub const USES_STAMP_V1: bool = true;
/// `stamp-v2` is used here.
pub const USES_STAMP_V2: bool = true;
