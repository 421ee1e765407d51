/*
 * Timers of a worker: one binary heap ordered by due time behind a single GSource in the
 * worker's GMainContext. Every transaction has two or three timers (retransmission,
 * timeout, linger); as separate GLib timeout sources they made GLib walk thousands of
 * sources twice per loop iteration (a third of the CPU in bench/epcscf_bench); the heap
 * costs O(log n) per start or cancel and O(1) per loop iteration.
 *
 * Lifetime mirrors a GSource the caller holds a reference to: the handle stays valid until
 * the caller cancels it, also after it fired; arg is freed (free_arg) when the handle is
 * released. A callback may cancel its own timer; G_SOURCE_CONTINUE re-arms it with the
 * same interval.
 */
#include "ep.h"

struct ep_timer {
    gint64 due; /* monotonic, microseconds */
    unsigned interval_ms;
    GSourceFunc fn;
    void *arg;
    GDestroyNotify free_arg;
    struct timer_heap *h;
    int pos;     /* index in the heap, -1 when not in it */
    bool owned;  /* the caller still holds the handle */
    bool firing; /* its callback runs */
};

struct timer_heap {
    GSource src; /* first: the heap is the GSource */
    GPtrArray *a;
};

static bool before(const struct ep_timer *x, const struct ep_timer *y)
{
    return x->due < y->due;
}

static void put(struct timer_heap *h, guint i, struct ep_timer *t)
{
    h->a->pdata[i] = t;
    t->pos = (int)i;
}

static void sift_up(struct timer_heap *h, guint i)
{
    struct ep_timer *t = h->a->pdata[i];
    while (i > 0) {
        guint parent = (i - 1) / 2;
        struct ep_timer *p = h->a->pdata[parent];
        if (!before(t, p))
            break;
        put(h, i, p);
        i = parent;
    }
    put(h, i, t);
}

static void sift_down(struct timer_heap *h, guint i)
{
    guint n = h->a->len;
    struct ep_timer *t = h->a->pdata[i];
    for (;;) {
        guint l = 2 * i + 1, r = l + 1, m = i;
        struct ep_timer *best = t;
        if (l < n && before(h->a->pdata[l], best)) {
            m = l;
            best = h->a->pdata[l];
        }
        if (r < n && before(h->a->pdata[r], best)) {
            m = r;
            best = h->a->pdata[r];
        }
        if (m == i)
            break;
        put(h, i, best);
        i = m;
    }
    put(h, i, t);
}

static void heap_push(struct timer_heap *h, struct ep_timer *t)
{
    g_ptr_array_add(h->a, t);
    sift_up(h, h->a->len - 1);
}

static void heap_remove(struct timer_heap *h, struct ep_timer *t)
{
    guint i = (guint)t->pos, last = h->a->len - 1;
    struct ep_timer *moved = h->a->pdata[last];
    g_ptr_array_set_size(h->a, last);
    t->pos = -1;
    if (i == last)
        return;
    put(h, i, moved);
    sift_down(h, i);
    sift_up(h, (guint)moved->pos);
}

static void release(struct ep_timer *t)
{
    if (t->free_arg != NULL)
        t->free_arg(t->arg);
    g_free(t);
}

static gboolean prepare(GSource *src, gint *timeout)
{
    struct timer_heap *h = (struct timer_heap *)src;
    if (h->a->len == 0) {
        *timeout = -1;
        return FALSE;
    }
    gint64 wait = ((struct ep_timer *)h->a->pdata[0])->due - g_source_get_time(src);
    if (wait <= 0) {
        *timeout = 0;
        return TRUE;
    }
    *timeout = (gint)MIN((wait + 999) / 1000, G_MAXINT);
    return FALSE;
}

static gboolean check(GSource *src)
{
    struct timer_heap *h = (struct timer_heap *)src;
    return h->a->len > 0 && ((struct ep_timer *)h->a->pdata[0])->due <= g_source_get_time(src);
}

static gboolean dispatch(GSource *src, GSourceFunc cb, gpointer data)
{
    (void)cb;
    (void)data;
    struct timer_heap *h = (struct timer_heap *)src;
    gint64 now = g_get_monotonic_time();
    while (h->a->len > 0) {
        struct ep_timer *t = h->a->pdata[0];
        if (t->due > now)
            break;
        heap_remove(h, t);
        t->firing = true;
        gboolean again = t->fn(t->arg);
        t->firing = false;
        if (!t->owned) {
            release(t); /* cancelled by its own callback */
        } else if (again == G_SOURCE_CONTINUE) {
            t->due = now + (gint64)t->interval_ms * 1000;
            heap_push(h, t);
        }
        /* else: fired; the handle lives until its owner cancels it */
    }
    return G_SOURCE_CONTINUE;
}

static void finalize(GSource *src)
{
    struct timer_heap *h = (struct timer_heap *)src;
    g_ptr_array_free(h->a, TRUE);
}

static GSourceFuncs funcs = {prepare, check, dispatch, finalize, NULL, NULL};

struct ep_timer *ep_timer_start(struct ep_worker *w, unsigned ms, GSourceFunc fn, void *arg,
                                GDestroyNotify free_arg)
{
    struct timer_heap *h = w->timers;
    if (h == NULL) {
        h = (struct timer_heap *)g_source_new(&funcs, sizeof(struct timer_heap));
        h->a = g_ptr_array_new();
        g_source_attach(&h->src, w->ctx);
        w->timers = h;
    }
    struct ep_timer *t = g_new0(struct ep_timer, 1);
    t->due = g_get_monotonic_time() + (gint64)ms * 1000;
    t->interval_ms = ms;
    t->fn = fn;
    t->arg = arg;
    t->free_arg = free_arg;
    t->h = h;
    t->owned = true;
    heap_push(h, t);
    return t;
}

void ep_timer_cancel(struct ep_timer **tp)
{
    struct ep_timer *t = *tp;
    if (t == NULL)
        return;
    *tp = NULL;
    t->owned = false;
    if (t->firing)
        return; /* dispatch releases it when the callback returns */
    if (t->pos >= 0)
        heap_remove(t->h, t);
    release(t);
}

void ep_timers_destroy(struct ep_worker *w)
{
    struct timer_heap *h = w->timers;
    if (h == NULL)
        return;
    /* Timers still in the heap belong to owners that are gone by now (transactions,
     * registrations); release them. */
    for (guint i = 0; i < h->a->len; i++)
        release(h->a->pdata[i]);
    g_ptr_array_set_size(h->a, 0);
    g_source_destroy(&h->src);
    g_source_unref(&h->src);
    w->timers = NULL;
}
