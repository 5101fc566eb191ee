//! The per-call resource limiter.
//!
//! wasmtime's built-in `StoreLimits` caps each linear memory separately, so
//! a component with many memories could use many times the limit. This
//! limiter caps the *total* of all the instance's memories, and records that
//! it refused something so that the resulting trap (a Rust guest aborts when
//! allocation fails) is reported as the memory limit, not as a crash.

use crate::error::Limit;
use crate::policy::caps;
use wasmtime::ResourceLimiter;

#[derive(Debug)]
pub(crate) struct Limiter {
    max_total: usize,
    total: usize,
    /// Set when a growth was refused: which limit, and what was refused.
    pub(crate) exceeded: Option<(Limit, String)>,
}

impl Limiter {
    pub(crate) fn new(max_total: u64) -> Self {
        Limiter {
            max_total: usize::try_from(max_total).unwrap_or(usize::MAX),
            total: 0,
            exceeded: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Creation of a memory arrives here too, as growth from 0.
        let new_total = (self.total - current.min(self.total)).saturating_add(desired);
        if new_total > self.max_total {
            self.exceeded = Some((
                Limit::Memory,
                format!(
                    "the plugin asked for {} bytes of linear memory in total; the limit is {} bytes",
                    new_total, self.max_total
                ),
            ));
            return Ok(false);
        }
        self.total = new_total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > caps::TABLE_ELEMENTS {
            self.exceeded = Some((
                Limit::Resources,
                format!(
                    "the plugin asked for a table of {desired} elements; the limit is {}",
                    caps::TABLE_ELEMENTS
                ),
            ));
            return Ok(false);
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        caps::INSTANCES
    }

    fn tables(&self) -> usize {
        caps::TABLES
    }

    fn memories(&self) -> usize {
        caps::MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_across_memories_is_capped() {
        let mut l = Limiter::new(100);
        assert!(l.memory_growing(0, 60, None).expect("ok"));
        // A second memory that alone fits, but not together with the first.
        assert!(!l.memory_growing(0, 60, None).expect("ok"));
        assert!(l.exceeded.is_some());
    }

    /// Many small memories, each under the limit, together over it: the
    /// instance is refused when its memories are created, and the limiter
    /// records why (so the sandbox reports the memory limit).
    #[test]
    fn many_small_memories_are_capped_by_their_total() {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = wasmtime::Engine::new(&config).expect("engine");
        // Five core instances with 16 MiB (256 pages) each: 80 MiB in total.
        let bomb = wat::parse_str(
            r#"(component
                 (core module $m (memory 256))
                 (core instance (instantiate $m))
                 (core instance (instantiate $m))
                 (core instance (instantiate $m))
                 (core instance (instantiate $m))
                 (core instance (instantiate $m)))"#,
        )
        .expect("wat");
        let component =
            wasmtime::component::Component::from_binary(&engine, &bomb).expect("compiles");
        let linker = wasmtime::component::Linker::<Limiter>::new(&engine);

        let mut store = wasmtime::Store::new(&engine, Limiter::new(64 << 20));
        store.limiter(|l| l);
        assert!(linker.instantiate(&mut store, &component).is_err());
        let (limit, why) = store.data().exceeded.clone().expect("the limiter refused");
        assert_eq!(limit, Limit::Memory);
        assert!(why.contains("in total"), "{why}");

        // The same component fits under a limit that covers the total.
        let mut store = wasmtime::Store::new(&engine, Limiter::new(96 << 20));
        store.limiter(|l| l);
        linker
            .instantiate(&mut store, &component)
            .expect("80 MiB fits in 96 MiB");
        assert!(store.data().exceeded.is_none());
    }

    #[test]
    fn an_oversized_table_is_the_fixed_resources_cap_not_memory() {
        let mut l = Limiter::new(1 << 30);
        assert!(
            !l.table_growing(0, caps::TABLE_ELEMENTS + 1, None)
                .expect("ok")
        );
        let (limit, why) = l.exceeded.clone().expect("refused");
        assert_eq!(limit, Limit::Resources);
        assert!(why.contains("table of"), "{why}");
        assert!(l.table_growing(0, caps::TABLE_ELEMENTS, None).expect("ok"));
    }

    #[test]
    fn growth_counts_only_the_difference() {
        let mut l = Limiter::new(100);
        assert!(l.memory_growing(0, 40, None).expect("ok"));
        assert!(l.memory_growing(40, 90, None).expect("ok"));
        assert!(l.exceeded.is_none());
        assert!(!l.memory_growing(90, 101, None).expect("ok"));
    }
}
