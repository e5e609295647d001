/* See error.h. */
#include "engine/error.h"

#include <stdarg.h>
#include <stdio.h>

void fm_error_set(fm_error *err, int errnum, const char *fmt, ...) {
    if (!err) return;
    va_list ap;
    va_start(ap, fmt);
    err->errnum = errnum;
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
}
