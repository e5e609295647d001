/* Filling in an fm_error (engine.h) on a failure path. */
#ifndef FASTMSG_ENGINE_ERROR_H
#define FASTMSG_ENGINE_ERROR_H

#include "engine/engine.h"

#if defined(__GNUC__) || defined(__clang__)
__attribute__((format(printf, 3, 4)))
#endif
/* Sets err (if not NULL) to the positive errno value `errnum` and the formatted text. */
void fm_error_set(fm_error *err, int errnum, const char *fmt, ...);

#endif
