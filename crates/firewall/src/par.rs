//! Work split over the machine's cores for big rulesets: rules parse and lower independently of
//! each other, so 50,000 of them go in ordered chunks to a few scoped threads. Small inputs stay on
//! the calling thread (threads cost more than they save below a few thousand items).

/// `items.iter().map(f).collect()`, in order, on up to `available_parallelism` threads when there
/// are at least `min_parallel` items.
pub(crate) fn map<T: Sync, U: Send>(items: &[T], min_parallel: usize, f: impl Fn(&T) -> U + Sync) -> Vec<U> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8);
    if threads < 2 || items.len() < min_parallel.max(2) {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items.chunks(chunk).map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<U>>())).collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            match h.join() {
                Ok(v) => out.extend(v),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order_on_both_paths() {
        let v: Vec<u32> = (0..10_000).collect();
        assert_eq!(super::map(&v, 100, |x| x * 2), v.iter().map(|x| x * 2).collect::<Vec<_>>());
        assert_eq!(super::map(&v[..5], 100, |x| x + 1), vec![1, 2, 3, 4, 5]);
        assert!(super::map(&[] as &[u32], 0, |x| *x).is_empty());
    }
}
