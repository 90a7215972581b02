//! Keyset pagination: newest first, by `(created_at, id)`, with an opaque cursor.

use backup_core::Page;
use uuid::Uuid;

use crate::{Result, ts::Ts};

/// The largest page.
pub const MAX_PAGE_SIZE: u32 = 500;
/// The page size when none is asked for.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// 9999-12-31T23:59:59.999Z: the latest time a cursor or an agent's report may carry.
pub(crate) const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// The position after which the next page starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub at: Ts,
    pub id: Uuid,
}

impl Cursor {
    fn encode(self) -> String {
        hex::encode(format!(
            "{}.{}",
            self.at.get().timestamp_millis(),
            self.id.simple()
        ))
    }

    fn decode(text: &str) -> Option<Self> {
        let raw = String::from_utf8(hex::decode(text).ok()?).ok()?;
        let (ms, id) = raw.split_once('.')?;
        // Only times this store can have written (PostgreSQL refuses years before 4713 BC).
        let ms: i64 = ms.parse().ok()?;
        if !(0..=MAX_TIMESTAMP_MS).contains(&ms) {
            return None;
        }
        Some(Cursor {
            at: Ts::new(chrono::DateTime::from_timestamp_millis(ms)?),
            id: Uuid::parse_str(id).ok()?,
        })
    }
}

/// Which page of a list: `limit` 1-500 (default 100) and the previous page's `nextCursor`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page; clamped to 1-500, 100 when `None`.
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self {
            limit: Some(limit),
            cursor: None,
        }
    }

    /// The page after `cursor`.
    pub fn after(limit: u32, cursor: impl Into<String>) -> Self {
        Self {
            limit: Some(limit),
            cursor: Some(cursor.into()),
        }
    }

    fn size(&self) -> u32 {
        self.limit
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, MAX_PAGE_SIZE)
    }

    /// One more than the page size: the extra row says whether another page exists.
    pub(crate) fn fetch_limit(&self) -> i64 {
        i64::from(self.size()) + 1
    }

    pub(crate) fn cursor(&self) -> Result<Option<Cursor>> {
        match &self.cursor {
            None => Ok(None),
            Some(text) => Cursor::decode(text).map(Some).ok_or_else(|| {
                backup_core::Error::invalid("cursor", text, "a nextCursor from a previous page")
                    .into()
            }),
        }
    }

    /// The page of `rows` (fetched with [`PageRequest::fetch_limit`]): each made a view, the
    /// cursor from the key of the last row kept.
    pub(crate) fn page_of<R, T>(
        &self,
        rows: &[R],
        key: impl Fn(&R) -> Cursor,
        view: impl Fn(&R) -> Result<T>,
    ) -> Result<Page<T>> {
        let items = rows.iter().map(view).collect::<Result<Vec<_>>>()?;
        Ok(self.finish(items, rows.iter().map(key).collect()))
    }

    /// Cuts the extra row off and makes the cursor from the last item kept.
    pub(crate) fn finish<T>(&self, mut items: Vec<T>, mut keys: Vec<Cursor>) -> Page<T> {
        let size = self.size() as usize;
        let more = items.len() > size;
        items.truncate(size);
        keys.truncate(size);
        Page {
            items,
            next_cursor: if more {
                keys.last().map(|k| k.encode())
            } else {
                None
            },
        }
    }
}
