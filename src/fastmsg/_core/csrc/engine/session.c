/* The receiver's sessions: for each sender it has seen, the next sequence number it expects, so
 * that a sender that reconnects resumes there (WELCOME says it) and resent records are skipped. */
#include <stdlib.h>
#include <string.h>

#include "engine/receiver_internal.h"

#define SESSIONS_MAX 4096u /* beyond this the oldest session is forgotten */
#define SESSIONS_MIN 16u   /* first allocation */

fm_session *fm_session_for(fm_session_table *t, uint64_t id) {
    for (uint32_t i = 0; i < t->n; i++)
        if (t->items[i].id == id) return &t->items[i];
    if (t->n == t->cap) {
        if (t->cap == SESSIONS_MAX) {
            /* forget the oldest session: it can no longer resume, only start afresh */
            fm_session_acks_free(&t->items[0]);
            memmove(t->items, t->items + 1, sizeof *t->items * (t->n - 1));
            t->n--;
        } else {
            uint32_t cap = t->cap ? t->cap * 2 : SESSIONS_MIN;
            fm_session *items = realloc(t->items, sizeof *items * cap);
            if (!items) return NULL;
            t->items = items;
            t->cap = cap;
        }
    }
    fm_session *s = &t->items[t->n++];
    memset(s, 0, sizeof *s);
    s->id = id;
    return s;
}

void fm_session_table_free(fm_session_table *t) {
    free(t->items);
    t->items = NULL;
    t->n = t->cap = 0;
}
