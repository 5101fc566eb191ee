//! Instance slots: how the engine allocates a call's instance, and the
//! host-wide cap on calls running at once.
//!
//! By default the engine uses wasmtime's pooling allocator: memories,
//! tables, instances and async stacks are reserved once, when the host is
//! built, and reused call after call instead of being mapped and unmapped
//! per call. The pool's shape comes from the manifest (each memory slot as
//! large as the largest `limits.memory` of any plugin) and from the fixed
//! per-slot [`SHAPE`]; a component that does not fit one slot is refused
//! when it is compiled, that is at load, never at call time.
//!
//! The number of slots doubles as the host-wide concurrency cap, in both
//! allocation modes: a call takes a slot before its store exists, waits at
//! most [`PoolSettings::busy_wait`] for one, and otherwise fails with the
//! typed [`Error::Busy`](crate::Error::Busy). With the cap in front of the
//! pool, the pool's totals are never exhausted mid-call.
//!
//! Keep-resident sizes: returning a slot to the pool with `madvise` makes
//! every other core flush its TLB (an IPI, costly in a VM), and with it
//! calls stop scaling across cores. Keeping the first [`KEEP_RESIDENT`]
//! bytes of each memory (and a little of each table and stack) resident
//! avoids the syscall for a small instance, which is most tool calls. The
//! cost is RSS: at most that much per slot that has been used, and pages a
//! call never touched are not resident at all.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How a host allocates the instances of its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InstanceAllocation {
    /// wasmtime's pooling allocator, sized when the host is built (the
    /// default): the fastest, and it scales across cores. It reserves
    /// address space up front (about 4 GiB per memory slot, not resident).
    #[default]
    Pooled,
    /// Memories and tables mapped per call and unmapped after it: no
    /// address space reserved up front, for embedders that cannot afford
    /// the reservation (e.g. under a tight `RLIMIT_AS`); slower per call.
    OnDemand,
}

/// What one slot holds at most. Generous for a Rust `wasm32-wasip2`
/// component (one memory, a handful of core instances and tables); a
/// component needing more is refused at load with the count it needs.
pub(crate) struct Shape {
    pub(crate) memories: u32,
    pub(crate) tables: u32,
    pub(crate) core_instances: u32,
}

/// The fixed per-slot shape.
pub(crate) const SHAPE: Shape = Shape {
    memories: 4,
    tables: 16,
    core_instances: 32,
};

/// Bytes of each memory slot kept resident when the slot is returned.
pub(crate) const KEEP_RESIDENT: usize = 2 << 20;
/// Bytes of each table slot kept resident.
const TABLE_KEEP_RESIDENT: usize = 256 << 10;
/// Bytes of each async stack kept resident.
const STACK_KEEP_RESIDENT: usize = 256 << 10;

/// Default slots: calls running at once in one host.
pub(crate) const DEFAULT_SLOTS: u32 = 64;
/// Default longest wait for a slot.
pub(crate) const DEFAULT_BUSY_WAIT: Duration = Duration::from_secs(5);
/// Most slots a host may ask for.
pub(crate) const MAX_SLOTS: u32 = 10_000;

/// How the host's instances are allocated, how many run at once, and
/// where their file operations run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PoolSettings {
    pub(crate) allocation: InstanceAllocation,
    /// Calls running at once (and pool slots).
    pub(crate) slots: u32,
    /// Longest wait for a free slot before a call fails as busy.
    pub(crate) busy_wait: Duration,
    /// Bytes of one memory slot: the largest `limits.memory` of any plugin.
    pub(crate) memory: u64,
    /// Whether operations on granted directories run on the thread that
    /// runs the call (no hop to a blocking thread and back, the default),
    /// or on tokio's blocking threads (for directories on network
    /// filesystems, where one operation may stall).
    pub(crate) file_io_in_place: bool,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            allocation: InstanceAllocation::default(),
            slots: DEFAULT_SLOTS,
            busy_wait: DEFAULT_BUSY_WAIT,
            memory: crate::policy::Limits::default().memory,
            file_io_in_place: true,
        }
    }
}

impl PoolSettings {
    /// Sets the engine's instance allocation strategy.
    pub(crate) fn configure(&self, config: &mut Config) {
        if self.allocation == InstanceAllocation::OnDemand {
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            return;
        }
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling(self)));
    }
}

/// The pooling allocator's configuration for `settings`.
pub(crate) fn pooling(settings: &PoolSettings) -> PoolingAllocationConfig {
    let slots = settings.slots;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(SHAPE.core_instances))
        .total_memories(slots.saturating_mul(SHAPE.memories))
        .total_tables(slots.saturating_mul(SHAPE.tables))
        .total_stacks(slots)
        .max_core_instances_per_component(SHAPE.core_instances)
        .max_memories_per_component(SHAPE.memories)
        .max_tables_per_component(SHAPE.tables)
        .max_memory_size(usize::try_from(settings.memory).unwrap_or(usize::MAX))
        .table_elements(crate::policy::caps::TABLE_ELEMENTS)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .async_stack_keep_resident(STACK_KEEP_RESIDENT);
    pool
}

/// The host-wide cap on calls running at once.
#[derive(Debug)]
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    total: u32,
    busy_wait: Duration,
}

/// No slot came free in time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Busy {
    pub(crate) slots: u32,
    pub(crate) waited: Duration,
}

impl Slots {
    pub(crate) fn new(settings: &PoolSettings) -> Slots {
        Slots {
            semaphore: Arc::new(Semaphore::new(settings.slots as usize)),
            total: settings.slots,
            busy_wait: settings.busy_wait,
        }
    }

    /// How many slots there are.
    pub(crate) fn total(&self) -> u32 {
        self.total
    }

    /// A slot, held until the permit is dropped, or [`Busy`] after the
    /// bounded wait.
    pub(crate) async fn acquire(&self) -> Result<OwnedSemaphorePermit, Busy> {
        let busy = Busy {
            slots: self.total,
            waited: self.busy_wait,
        };
        match tokio::time::timeout(self.busy_wait, Arc::clone(&self.semaphore).acquire_owned())
            .await
        {
            Ok(Ok(permit)) => Ok(permit),
            // The semaphore is never closed; treat it like a timeout anyway.
            Ok(Err(_)) | Err(_) => Err(busy),
        }
    }
}
