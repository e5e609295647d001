/* dl_win.h: walks the module's import table, and keeps the imported modules that are OpenSSL's
 * (exporting SSL_new or OpenSSL_version_num): the very DLLs the ssl module calls, even when
 * another OpenSSL is loaded in the process too. */
#ifdef _WIN32
#include "net/dl_win.h"

#include <stdio.h>

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#define MAX_LIBS 4 /* libssl and libcrypto, with room to spare */

typedef struct {
    HMODULE libs[MAX_LIBS];
    int n;
} dl_set;

static int is_openssl(HMODULE m) {
    return GetProcAddress(m, "SSL_new") != NULL || GetProcAddress(m, "OpenSSL_version_num") != NULL;
}

void *fm_dl_open(const char *module_path, char *err, size_t errlen) {
    static dl_set set; /* (one ssl module per process: the first lookup holds) */
    HMODULE mod = GetModuleHandleA(module_path); /* a full path works, and NULL is the program */
    if (!mod) {
        snprintf(err, errlen, "the ssl module's library is not loaded (error %lu)", (unsigned long)GetLastError());
        return NULL;
    }
    const unsigned char *base = (const unsigned char *)mod;
    const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + ((const IMAGE_DOS_HEADER *)base)->e_lfanew);
    const IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_IMPORT];
    set.n = 0;
    if (dir->VirtualAddress) {
        for (const IMAGE_IMPORT_DESCRIPTOR *d = (const IMAGE_IMPORT_DESCRIPTOR *)(base + dir->VirtualAddress);
             d->Name && set.n < MAX_LIBS; d++) {
            HMODULE m = GetModuleHandleA((const char *)(base + d->Name));
            if (m && is_openssl(m)) set.libs[set.n++] = m;
        }
    }
    if (!set.n) {
        snprintf(err, errlen, "the ssl module imports no OpenSSL library");
        return NULL;
    }
    return &set;
}

void *fm_dl_sym(void *libs, const char *name) {
    const dl_set *set = libs;
    for (int i = 0; i < set->n; i++) {
        FARPROC f = GetProcAddress(set->libs[i], name);
        if (f) return (void *)(size_t)f; /* (through an integer: ISO C has no function-to-object cast) */
    }
    return NULL;
}

#endif
