//! Route matching on tables of 10 and 300 routes (AWS's per-API maximum): the cost
//! should follow the path's length, not the table's size.
//! `cargo bench -p weir --bench route`.

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use weir::route::{RouteKey, RouteTable};

fn table(n: usize) -> RouteTable {
    let methods = ["GET", "POST", "PUT", "DELETE", "ANY"];
    let keys: Vec<RouteKey> = (0..n)
        .map(|i| {
            let m = methods[i % methods.len()];
            let key = match i % 4 {
                0 => format!("{m} /api/v1/resource{i}"),
                1 => format!("{m} /api/v1/resource{i}/{{id}}"),
                2 => format!("{m} /api/v1/resource{i}/{{id}}/items/{{item}}"),
                _ => format!("{m} /static/r{i}/{{path+}}"),
            };
            key.parse().unwrap()
        })
        .chain(std::iter::once(RouteKey::Default))
        .collect();
    RouteTable::new(&keys).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("route lookup");
    for n in [10, 300] {
        let t = table(n);
        // Routes present in both tables.
        let cases = [
            ("literal", "GET", "/api/v1/resource0"),
            ("param", "POST", "/api/v1/resource1/42"),
            ("two params", "PUT", "/api/v1/resource2/42/items/7"),
            ("greedy", "DELETE", "/static/r3/a/b/c/d.css"),
            ("default", "GET", "/nothing/here"),
        ];
        for (name, method, path) in cases {
            assert!(t.lookup(method, path).is_some(), "{name}");
            group.bench_with_input(BenchmarkId::new(name, n), &(method, path), |b, (m, p)| {
                b.iter(|| t.lookup(std::hint::black_box(m), std::hint::black_box(p)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
