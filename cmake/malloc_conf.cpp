// Linked into every hemoscan executable: jemalloc reads this symbol at start-up. Keeping dirty and
// muzzy pages (never returning them to the OS) avoids page faults on the large, repeated tensor
// allocations of training; measured 1.4-2.3x faster together with OpenBLAS (docs/notebook/results-log-2026-11.md).
// oversize_threshold:0 keeps huge allocations (>= 8 MiB: batches, activations) in the ordinary arenas:
// with jemalloc's separate arena for them and decay off, a long segmentation training grew by about
// 30 MB per batch (24 GB and an OOM kill after about 500 batches); now it stays flat (docs/notebook/results-log-2026-11.md).
// lg_extent_max_active_fit:32 lets a request reuse any free (dirty) extent however large: with the
// default cap (an extent at most 64x the request), freed activations coalesced into one extent too big
// for any request, new requests took fresh pages beside it and it grew by ~1 GB a minute (1,600
// studies held: OOM-killed at 24 GB; jemalloc's own stats showed it, docs/notebook/results-log-2026-11.md). Now flat.
extern "C" {
extern const char* malloc_conf;
const char* malloc_conf =
    "dirty_decay_ms:-1,muzzy_decay_ms:-1,retain:true,oversize_threshold:0,lg_extent_max_active_fit:32";
}
