//! Token-bucket checks: the account level alone, account + route, and all three levels
//! with a per-key bucket. `cargo bench -p weir --bench throttle`.

use criterion::{Criterion, criterion_group, criterion_main};
use weir::throttle::{BucketKind, Buckets, KeyId, Limit, MemoryStore, Throttle};

fn bench(c: &mut Criterion) {
    // Buckets so large they never run dry: this measures the check, not refusals.
    let huge = Limit {
        rate: 1e9,
        burst: u32::MAX,
    };
    let mut buckets = Buckets::default();
    let account = buckets.add(huge, BucketKind::Shared);
    let route = buckets.add(huge, BucketKind::Shared);
    let plan = buckets.add(huge, BucketKind::PerKey);
    let throttle = Throttle::new(
        Box::new(MemoryStore::new(&buckets)),
        account,
        vec![None, Some(route)],
    );
    let mut group = c.benchmark_group("throttle admit");
    group.bench_function("account", |b| b.iter(|| throttle.admit(None, 0)));
    group.bench_function("account + route", |b| b.iter(|| throttle.admit(None, 1)));
    group.bench_function("account + route + key", |b| {
        b.iter(|| throttle.admit(Some((plan, KeyId(7))), 1))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
