//! How the key store's values are written as text, in either database: times as RFC 3339,
//! lists as JSON, digests as lowercase hex.

use chrono::{DateTime, Utc};

use crate::StoreError;

pub(crate) fn list_to_text(v: &Option<Vec<String>>) -> Option<String> {
    v.as_ref().and_then(|v| serde_json::to_string(v).ok())
}

pub(crate) fn text_to_list(t: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    t.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(e.to_string())))
        .transpose()
}

pub(crate) fn time(t: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    t.map(|t| {
        DateTime::parse_from_rfc3339(&t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    })
    .transpose()
}

pub(crate) fn hex_decode(s: &str, out: &mut [u8; 32]) -> Option<()> {
    if s.len() != 64 {
        return None;
    }
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(())
}

pub(crate) fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
