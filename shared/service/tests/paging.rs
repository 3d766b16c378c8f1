//! Lists are read from the store page by page and answer Lago's `page` / `per_page` the way
//! slicing the whole list would (same order, same totals), for any page.

use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use tally_service::invoices::{self, FeeFilter, InvoiceFilter};
use tally_service::subscriptions::{self, SubscriptionFilter};
use tally_service::{customers, organizations, period_close, testing, FixedClock, PageRequest, Paged};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().expect("instant")
}

fn page(page: usize, per_page: usize) -> PageRequest {
    PageRequest { page, per_page }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_the_slice_of_the_whole_list() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Arc::new(tally_store::SqliteStore::open(dir.path()).expect("store"));
    let clock = Arc::new(FixedClock::new(at("2024-04-01T00:00:00Z")));
    let tally = tally_service::Tally::new(store, clock.clone());
    let org = organizations::bootstrap(&tally, "Acme", Some("k".into())).await.expect("org").organization;
    testing::counting_plan(&tally, &org, "calls", "p", 1000, "1").await.expect("catalog");
    // 23 subscriptions created a minute apart (so "newest first" is well defined).
    for i in 0..23 {
        clock.set(at("2024-04-01T00:00:00Z") + Duration::minutes(i));
        testing::subscribe(&tally, &org, &format!("c{i:02}"), "p", &format!("s{i:02}"), None).await.expect("sub");
    }
    period_close::run(&tally, &org, at("2024-06-01T00:00:00Z")).await.expect("close"); // April and May: 46 invoices

    let customers_all = customers::list(&tally, &org).await.expect("customers");
    let invoices_all = invoices::list(&tally, &org, &InvoiceFilter::default()).await.expect("invoices");
    assert_eq!((customers_all.len(), invoices_all.len()), (23, 46));
    for (number, per_page) in [(1, 10), (2, 10), (3, 10), (4, 10), (2, 7), (1, 100)] {
        let expect = |len: usize| Paged::of((0..len).collect::<Vec<_>>(), page(number, per_page));

        let got = customers::list_page(&tally, &org, page(number, per_page)).await.expect("page");
        let want = expect(23);
        assert_eq!((got.total_count, got.total_pages, got.current_page), (23, want.total_pages, number));
        let ids: Vec<_> = got.items.iter().map(|c| c.external_id.clone()).collect();
        let wanted: Vec<_> = want.items.iter().map(|&i| customers_all[i].external_id.clone()).collect();
        assert_eq!(ids, wanted, "customers page {number} of {per_page}");

        let got =
            invoices::list_page(&tally, &org, &InvoiceFilter::default(), page(number, per_page)).await.expect("page");
        let ids: Vec<_> = got.items.iter().map(|i| i.lago_id.clone()).collect();
        let wanted: Vec<_> = expect(46).items.iter().map(|&i| invoices_all[i].lago_id.clone()).collect();
        assert_eq!((got.total_count, ids), (46, wanted), "invoices page {number} of {per_page}");

        // Newest first: s22, s21, …
        let got = subscriptions::list(&tally, &org, &SubscriptionFilter::default(), page(number, per_page))
            .await
            .expect("page");
        let ids: Vec<_> = got.items.iter().map(|s| s.external_id.clone()).collect();
        let wanted: Vec<_> = expect(23).items.iter().map(|&i| format!("s{:02}", 22 - i)).collect();
        assert_eq!((got.total_count, ids), (23, wanted), "subscriptions page {number} of {per_page}");
    }

    // A filter counts only what it keeps: one customer's invoices, and its charge fees.
    let one = InvoiceFilter { external_customer_id: Some("c05".into()), ..Default::default() };
    let got = invoices::list_page(&tally, &org, &one, page(1, 1)).await.expect("page");
    assert_eq!((got.total_count, got.total_pages, got.items.len()), (2, 2, 1));
    let fees =
        FeeFilter { external_customer_id: Some("c05".into()), fee_type: Some("charge".into()), ..Default::default() };
    let got = invoices::list_fees(&tally, &org, &fees, page(1, 100)).await.expect("fees");
    assert_eq!(got.total_count, 2, "one charge fee per invoice");
    assert!(got.items.iter().all(|f| f.fee.fee_type == "charge" && f.invoice.external_customer_id == "c05"));
}
