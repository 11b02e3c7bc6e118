//! `daily_limit`: counted per China day (QQ's quota resets at midnight UTC+8), and kept
//! in the queue directory so a restart cannot send past it.

use super::*;

/// Seconds from `t0()` to the next midnight in China (UTC+8): `t0()` is 08:00 UTC,
/// 16:00 in Beijing, so 8 hours (UTC's midnight would be 16 hours away).
const TO_CHINA_MIDNIGHT: u64 = 86400 - (1_800_000_000 + 8 * 3600) % 86400;

fn limited(n: u32) -> Settings {
    let mut s = settings();
    s.daily_limit = n;
    s
}

#[tokio::test(start_paused = true)]
async fn daily_limit_holds_until_midnight_in_china() {
    assert_eq!(TO_CHINA_MIDNIGHT, 8 * 3600);
    let (_dir, store) = store();
    put(&store, &["b@x.cn"], t0(), BODY);
    put(&store, &["b@x.cn"], t0(), BODY);
    let (d, status, _) = start(&store, vec![], limited(1));
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(status.delivered.load(Ordering::Relaxed), 1);
    assert_eq!(
        store.list().unwrap().len(),
        1,
        "the second waits for the next day"
    );
    let took = drained(&store, Duration::from_secs(2 * 86400)).await + Duration::from_secs(60);
    assert!(
        took >= Duration::from_secs(TO_CHINA_MIDNIGHT)
            && took < Duration::from_secs(TO_CHINA_MIDNIGHT + 3600),
        "sent at China's midnight, not UTC's: {took:?}"
    );
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn the_count_survives_a_restart() {
    let (_dir, store) = store();
    put(&store, &["b@x.cn"], t0(), BODY);
    let (d, status, _) = start(&store, vec![], limited(1));
    drained(&store, Duration::from_secs(60)).await;
    d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(status.delivered.load(Ordering::Relaxed), 1);
    // The proxy restarts an hour later, the same day in China.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let now = t0() + Duration::from_secs(3600 + 60);
    put(&store, &["b@x.cn"], now, BODY);
    let (d, status, _) = start_at(&store, vec![], limited(1), now);
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(
        status.delivered.load(Ordering::Relaxed),
        0,
        "the day's quota was used before the restart"
    );
    drained(&store, Duration::from_secs(86400)).await;
    d.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(start_paused = true)]
async fn an_unreadable_count_means_the_day_is_used_up() {
    let (_dir, store) = store();
    std::fs::write(store.daily_path(ACCOUNT), b"day=oops").unwrap();
    put(&store, &["b@x.cn"], t0(), BODY);
    let (d, status, _) = start(&store, vec![], limited(100));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(status.delivered.load(Ordering::Relaxed), 0);
    let took = drained(&store, Duration::from_secs(86400)).await + Duration::from_secs(600);
    assert!(took >= Duration::from_secs(TO_CHINA_MIDNIGHT), "{took:?}");
    d.shutdown(Duration::from_secs(5)).await;
    // The new day's count replaced the bad file.
    let c = store.daily_count(ACCOUNT).unwrap().unwrap();
    assert_eq!(c.used, 1);
}

#[tokio::test(start_paused = true)]
async fn no_file_without_a_limit() {
    let (_dir, store) = store();
    put(&store, &["b@x.cn"], t0(), BODY);
    let (d, _, _) = start(&store, vec![], settings());
    drained(&store, Duration::from_secs(60)).await;
    d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(store.daily_count(ACCOUNT).unwrap(), None);
}
