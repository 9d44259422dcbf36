# Split a proxy's CPU time per request into components, from a flat perf profile:
#   perf report --no-children --sort dso,symbol --percent-limit 0 --stdio | awk -v us=41.2 -f attribute.awk
# `us` is the process's CPU time per request (microseconds). Prints "component<TAB>us" lines.
# A symbol counts for the crate its name starts with; code the compiler inlined into a function
# counts for that function's crate (so part of hyper shows up as wxgate's own code, and the
# reverse for generic functions instantiated in hyper).

function component(dso, sym,   crate) {
    if (dso ~ /kernel/) return "kernel (TCP, epoll, scheduler)"
    if (dso == "[vdso]") return "clock reads (vdso)"
    if (dso ~ /^libssl/) return "TLS (rustls / OpenSSL libssl)"
    if (dso ~ /^libcrypto/) return "crypto (ring / OpenSSL libcrypto)"
    if (dso ~ /^libc[.-]/ || dso ~ /^ld-linux/) return "libc (memcpy, syscall stubs)"
    if (dso == "nginx") return "own code (wxgate / floor / nginx)"
    sub(/^<+/, "", sym)
    if (sym ~ /^_?mi_/ || sym ~ /mimalloc/) return "allocator"
    if (sym ~ /^ring_core_/ || sym ~ /^aws_lc/) return "crypto (ring / OpenSSL libcrypto)"
    crate = sym
    sub(/::.*/, "", crate)
    if (crate == "wxgate" || crate == "floor_proxy") return "own code (wxgate / floor / nginx)"
    if (crate ~ /^(hyper|hyper_util|http|httparse|http_body|http_body_util|bytes)$/) return "HTTP (hyper, http, httparse, bytes)"
    if (crate ~ /^(tokio|mio)$/) return "runtime (tokio)"
    if (crate ~ /^(rustls|tokio_rustls)$/) return "TLS (rustls / OpenSSL libssl)"
    if (crate ~ /^(ring|aws_lc_rs)$/) return "crypto (ring / OpenSSL libcrypto)"
    if (crate ~ /^(moka|crossbeam_epoch|crossbeam_utils|crossbeam_channel|quanta|tagptr)$/) return "session store (moka)"
    if (crate ~ /^(core|alloc|std)$/) return "Rust core/std (str, iterators, ...)"
    return "other"
}

$1 ~ /%$/ && NF >= 4 {
    pct = $1
    sub(/%$/, "", pct)
    c = component($2, $4)
    t[c] += pct * us / 100
}

END {
    for (c in t) printf "%s\t%.2f\n", c, t[c]
}
