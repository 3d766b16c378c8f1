use std::time::Duration;
use tally_queue::{contract, MemoryQueue};

#[tokio::test]
async fn memory_queue_passes_the_contract() {
    let visibility = Duration::from_millis(500);
    contract::run_all(&MemoryQueue::new(visibility), visibility).await;
}
