/* net/dl_win.c: OpenSSL's functions found through the import table of the module that uses them.
 * One file, three programs: -DFAKE_SSL builds a DLL standing in for libssl (it exports SSL_new),
 * -DFAKE_MODULE one standing in for the ssl module (it imports SSL_new from the first), and the
 * default the test, which loads the module and looks SSL_new up through it. Built and run under
 * wine by tests/test_windows_native.py; elsewhere it compiles to nothing (a Windows-only test). */
#ifndef _WIN32
typedef int fm_dl_selftest_is_windows_only;
#elif defined(FAKE_SSL)
__declspec(dllexport) int SSL_new(void) { return 42; }
__declspec(dllexport) unsigned long OpenSSL_version_num(void) { return 0x30000000ul; }

#elif defined(FAKE_MODULE)
__declspec(dllimport) int SSL_new(void);
__declspec(dllexport) int module_init(void) { return SSL_new(); }

#else
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "net/dl_win.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>


int main(void) {
    char path[MAX_PATH], err[200] = "";
    HMODULE mod = LoadLibraryA("dl_module.dll"), ssl = GetModuleHandleA("libssl-fake.dll");
    CHECK(mod && ssl && GetModuleFileNameA(mod, path, sizeof path) > 0);
    void *h = fm_dl_open(path, err, sizeof err);
    CHECK(h != NULL);
    int (*ssl_new)(void) = (int (*)(void))(size_t)fm_dl_sym(h, "SSL_new");
    CHECK(ssl_new && (void *)(size_t)ssl_new == (void *)(size_t)GetProcAddress(ssl, "SSL_new") && ssl_new() == 42);
    CHECK(fm_dl_sym(h, "SSL_no_such_function") == NULL);
    /* The program itself imports no OpenSSL; a module that is not loaded is not loaded here. */
    CHECK(fm_dl_open(NULL, err, sizeof err) == NULL && strstr(err, "imports no OpenSSL"));
    CHECK(fm_dl_open("C:\\no\\such\\module.pyd", err, sizeof err) == NULL && strstr(err, "not loaded"));
    printf("%lu failures\n", failures);
    return failures != 0;
}
#endif
