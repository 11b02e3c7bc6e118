//! The per-account count behind `[queue] daily_limit`, kept on disk (`dir/daily/`) so
//! that a restart, or a crash loop, cannot send past the provider's daily quota: one
//! small file per account, rewritten whole and atomically (temporary file, fsync,
//! rename, fsync of the directory) after each delivered message.

use std::fs;
use std::path::PathBuf;

use super::{fsx, Store, StoreError};

/// One account's count for one quota day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyCount {
    /// The quota day: days since 1970-01-01 in the quota's zone (see
    /// [`crate::queue::schedule::QUOTA_UTC_OFFSET`]).
    pub day: i64,
    /// Messages delivered that day.
    pub used: u32,
}

impl DailyCount {
    /// The file's text: one line, `day=N used=N`.
    fn encode(self) -> Vec<u8> {
        format!("day={} used={}\n", self.day, self.used).into_bytes()
    }

    /// Parses [`DailyCount::encode`]'s text, strictly.
    fn decode(bytes: &[u8]) -> Result<DailyCount, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not text".to_string())?;
        let line = text
            .strip_suffix('\n')
            .ok_or_else(|| "no final newline (truncated?)".to_string())?;
        let mut fields = line.split(' ');
        let mut field = |key: &str| {
            fields
                .next()
                .and_then(|f| f.strip_prefix(key)?.strip_prefix('='))
                .ok_or_else(|| format!("no {key}= field"))
        };
        let day = field("day")?;
        let used = field("used")?;
        if fields.next().is_some() {
            return Err("unexpected text after used=".into());
        }
        Ok(DailyCount {
            day: day
                .parse()
                .map_err(|_| format!("day={day:?} is not a number"))?,
            used: used
                .parse()
                .map_err(|_| format!("used={used:?} is not a number"))?,
        })
    }
}

impl Store {
    /// The file of `account`'s count: its id in hex, so any id is a safe file name.
    pub fn daily_path(&self, account: &str) -> PathBuf {
        let hex: String = account.bytes().map(|b| format!("{b:02x}")).collect();
        self.inner.daily.join(format!("{hex}.count"))
    }

    /// `account`'s stored count; `None` when it has none yet. `Corrupt` when the file
    /// cannot be parsed (the caller decides what that means for the quota).
    pub fn daily_count(&self, account: &str) -> Result<Option<DailyCount>, StoreError> {
        let path = self.daily_path(account);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io("read", &path, e)),
        };
        DailyCount::decode(&bytes)
            .map(Some)
            .map_err(|why| StoreError::Corrupt { path, why })
    }

    /// Stores `account`'s count, atomically and durably.
    pub fn save_daily_count(&self, account: &str, count: DailyCount) -> Result<(), StoreError> {
        let dest = self.daily_path(account);
        let name = dest.file_name().map_or_else(String::new, |n| {
            format!("{}.{:08x}", n.to_string_lossy(), rand::random::<u32>())
        });
        fsx::write_replace(&self.tmp_path(&name), &dest, &count.encode())?;
        fsx::sync_dir(&self.inner.daily)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_text() {
        let ok = |day, used| Ok(DailyCount { day, used });
        let cases: [(&[u8], Result<DailyCount, ()>); 8] = [
            (b"day=20500 used=17\n", ok(20500, 17)),
            (b"day=-1 used=0\n", ok(-1, 0)),
            (b"day=20500 used=17", Err(())),
            (b"day=20500\n", Err(())),
            (b"used=1 day=2\n", Err(())),
            (b"day=20500 used=-3\n", Err(())),
            (b"day=20500 used=1 more\n", Err(())),
            (b"\xff\xfe\n", Err(())),
        ];
        for (bytes, want) in cases {
            assert_eq!(DailyCount::decode(bytes).map_err(|_| ()), want, "{bytes:?}");
        }
        let c = DailyCount { day: 7, used: 3 };
        assert_eq!(DailyCount::decode(&c.encode()), Ok(c));
    }

    #[test]
    fn saved_counts_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("q");
        let (store, _) = Store::open(&q, None).unwrap();
        assert_eq!(store.daily_count("a@qq.com").unwrap(), None);
        let c = DailyCount {
            day: 20500,
            used: 4,
        };
        store.save_daily_count("a@qq.com", c).unwrap();
        store.save_daily_count("../b", c).unwrap();
        let (again, rec) = Store::open(&q, None).unwrap();
        assert_eq!(rec.orphans_removed, 0);
        assert_eq!(again.daily_count("a@qq.com").unwrap(), Some(c));
        assert!(again.daily_path("../b").starts_with(q.join("daily")));
        fs::write(again.daily_path("a@qq.com"), b"garbage").unwrap();
        assert!(matches!(
            again.daily_count("a@qq.com"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
