# Sourced by run_asan.sh and leaks.sh: preloads libFuzzer and Clang's ASan runtime (which holds
# UBSan's too) for a package built with FASTMSG_FUZZ=1. Expects $work, a scratch directory.
rt="$(clang -print-runtime-dir)"
runtime() {  # a Clang runtime library, named with or without the architecture (per LLVM's layout)
    local f
    for f in "$rt/libclang_rt.$1-x86_64.$2" "$rt/libclang_rt.$1.$2"; do
        [ -e "$f" ] && { echo "$f"; return; }
    done
    echo "no $1 runtime in $rt" >&2
    return 1
}
asan="$(runtime asan so)"
fuzzer_archive="$(runtime fuzzer_no_main a)"
# libFuzzer as a shared library loaded before the ASan runtime: its coverage callbacks must win
# over the runtime's weak stand-ins, or Python's and the core's coverage are both lost.
fuzzer="$work/libfuzzer_no_main.so"
[ -e "$fuzzer" ] || clang++ -shared -o "$fuzzer" -Wl,--whole-archive "$fuzzer_archive" -Wl,--no-whole-archive -lpthread -ldl
export LD_PRELOAD="$fuzzer:$asan"
export PYTHONMALLOC=malloc
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
