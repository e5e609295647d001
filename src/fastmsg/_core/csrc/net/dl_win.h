/* Finding OpenSSL's functions on Windows, where a module's handle finds only its own exports
 * (dlsym on Linux also searches the libraries it needs). tls.c's counterpart of dlopen/dlsym. */
#ifndef FASTMSG_DL_WIN_H
#define FASTMSG_DL_WIN_H

#include <stddef.h>

/* The libraries the module at `module_path` imports (the ssl module's libssl and libcrypto);
 * NULL: those of the program itself. NULL, with the reason in err, if the module is not loaded
 * or imports no OpenSSL. */
void *fm_dl_open(const char *module_path, char *err, size_t errlen);
/* The address of `name` in the first of those libraries that exports it, or NULL. */
void *fm_dl_sym(void *libs, const char *name);

#endif
