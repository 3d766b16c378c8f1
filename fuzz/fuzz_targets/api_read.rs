#![no_main]

use std::sync::LazyLock;

// One tally (store, catalog) for the whole run; each input is one request.
static API: LazyLock<tally_fuzzing::Api> = LazyLock::new(tally_fuzzing::Api::new);

libfuzzer_sys::fuzz_target!(|data: &[u8]| API.read(data));
