/* The simulator's event loop in C, for the configurations it covers (planner/serving/sim/fastcore.py decides
 * which: every built-in one). Aggregated replicas or disaggregated prefill/decode pools; reserve-mode KV (blocks
 * for prompt and whole output up front, never preempted) or on-demand KV (blocks as tokens are written, the newest
 * sequence preempted by recompute or swap when a step finds none free); FCFS, priority and slo-aware queues;
 * priority preemption (multitenant.py) and live migration; speculative decoding (whole or fractional tokens per
 * step); LoRA adapters (an LRU resident set per replica, loads one after another on the host link); the pinned
 * shared prefix and follow-up turns whose history stays in an LRU prefix cache; any number of pools and
 * replicas; the round-robin, least-outstanding, static and threshold routers, with session affinity;
 * decode-first or prefill-first steps, chunked prefill, asynchronous scheduling and the per-request front-end time.
 *
 * It is a line-by-line transcription of the Python reference (core.py, replica.py, stepform.py, decodes.py,
 * steptable.py, queues.py, kvcache.py, adapters.py, multitenant.py): the same events in the same order, the same
 * floating-point operations in the same order (built with -ffp-contract=off, so no fused multiply-adds), so its
 * results are identical to the last bit; tests/test_sim_fastcore.py checks that on randomized workloads.
 * Comments name the Python function each block mirrors. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef int64_t i64;
/* core.py RELEASE_GAP_S: the spacing of follow-up requests a client releases at one instant */
static const double RELEASE_GAP_S = 1e-6;

enum { IDLE = 0, JUMP = 1, MIXED = 2, PREFILL = 3 };
enum { ARRIVE = 0, KV_IN = 1, ENGINE_IN = 2, MIGRATE_IN = 3 };
enum { BOTH = 0, PREFILL_ROLE = 1, DECODE_ROLE = 2 };
enum { PINT_STRIDE = 25, PDBL_STRIDE = 19, REP_OUT_STRIDE = 10, MIG_LOG = 1000 }; /* per-pool ints and doubles, per-replica outputs */
enum { R_ROUND_ROBIN = 0, R_LEAST = 1, R_STATIC = 2, R_THRESHOLD = 3 };

/* ------------------------------------------------------------------ binary heaps keyed (t, seq) */
typedef struct { double t; i64 seq; i64 a; i64 kind; } Ev;
typedef struct { Ev *v; i64 n, cap; } EvHeap;

static int ev_less(const Ev *x, const Ev *y) { return x->t < y->t || (x->t == y->t && x->seq < y->seq); }

static int ev_push(EvHeap *h, Ev e) {
    if (h->n == h->cap) {
        i64 cap = h->cap ? 2 * h->cap : 64;
        Ev *v = realloc(h->v, (size_t)cap * sizeof(Ev));
        if (!v) return -1;
        h->v = v, h->cap = cap;
    }
    i64 i = h->n++;
    while (i > 0) {
        i64 p = (i - 1) / 2;
        if (!ev_less(&e, &h->v[p])) break;
        h->v[i] = h->v[p];
        i = p;
    }
    h->v[i] = e;
    return 0;
}

static Ev ev_pop(EvHeap *h) {
    Ev top = h->v[0], last = h->v[--h->n];
    i64 i = 0, n = h->n;
    for (;;) {
        i64 c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ev_less(&h->v[c + 1], &h->v[c])) c++;
        if (!ev_less(&h->v[c], &last)) break;
        h->v[i] = h->v[c];
        i = c;
    }
    if (n) h->v[i] = last;
    return top;
}

/* decode completions keyed (step, slot, generation); a slot's generation voids entries of sequences
 * that left early (preempted) */
typedef struct { i64 step; i64 slot; i64 gen; } Done;

static int done_less(const Done *x, const Done *y) {
    return x->step < y->step || (x->step == y->step && (x->slot < y->slot || (x->slot == y->slot && x->gen < y->gen)));
}

static int done_push(Done **hp, i64 *n, i64 *cap, Done e) {
    if (*n == *cap) {
        i64 c = *cap ? 2 * *cap : 64;
        Done *v = realloc(*hp, (size_t)c * sizeof(Done));
        if (!v) return -1;
        *hp = v, *cap = c;
    }
    Done *h = *hp;
    i64 i = (*n)++;
    while (i > 0) {
        i64 p = (i - 1) / 2;
        if (!done_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
    return 0;
}

static Done done_pop(Done *h, i64 *np) {
    Done top = h[0], last = h[--(*np)];
    i64 i = 0, n = *np;
    for (;;) {
        i64 c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && done_less(&h[c + 1], &h[c])) c++;
        if (!done_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (n) h[i] = last;
    return top;
}

/* ------------------------------------------------------------------ the step-cost table (steptable.py) */
typedef struct {
    const double *n_ax, *c_ax, *p_ax, *l_ax, *dec, *mix, *row_w;
    const i64 *row_i;
    i64 nn, nc, np_, nl, nrows;
    i64 nlast, clast, plast, llast, sn, sc, sp;
} Table;

static i64 bisect_right(const double *a, i64 n, double x) {
    i64 lo = 0, hi = n;
    while (lo < hi) {
        i64 mid = (lo + hi) / 2;
        if (x < a[mid]) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* Python's -(-x // b): the ceiling of x / b for b > 0, any sign of x */
static i64 ceil_div(i64 x, i64 b) {
    i64 q = x / b;
    return (x % b != 0 && x > 0) ? q + 1 : q;
}

/* Python's divmod for b > 0 (floor division) */
static i64 floor_div(i64 x, i64 b) {
    i64 q = x / b;
    return (x % b != 0 && x < 0) ? q - 1 : q;
}

static i64 clamp_cell(i64 i, i64 last) { return i < 0 ? 0 : (i > last ? last : i); }

/* StepTable.decode */
static double tab_decode(const Table *T, double n, double ctx) {
    const double *ax = T->n_ax;
    i64 i = clamp_cell(bisect_right(ax, T->nn, n) - 1, T->nlast);
    double wi = (n - ax[i]) / (ax[i + 1] - ax[i]);
    ax = T->c_ax;
    i64 j = clamp_cell(bisect_right(ax, T->nc, ctx) - 1, T->clast);
    double wj = (ctx - ax[j]) / (ax[j + 1] - ax[j]);
    const double *r0 = T->dec + i * T->nc, *r1 = T->dec + (i + 1) * T->nc;
    double a = r0[j] + wj * (r0[j + 1] - r0[j]);
    double b = r1[j] + wj * (r1[j + 1] - r1[j]);
    return a + wi * (b - a);
}

/* StepTable.decode_pair (whole n within the table's rows) */
static void tab_decode_pair(const Table *T, i64 n, double c0, double c1, double *out0, double *out1) {
    i64 i = T->row_i[n];
    double wi = T->row_w[n];
    const double *r0 = T->dec + i * T->nc, *r1 = T->dec + (i + 1) * T->nc, *ax = T->c_ax;
    i64 last = T->clast;
    i64 j = bisect_right(ax, T->nc, c0) - 1;
    j = j < 0 ? 0 : (j > last ? last : j);
    double x = ax[j], y = ax[j + 1];
    double a0 = r0[j], a1 = r1[j];
    double d0 = r0[j + 1] - a0, d1 = r1[j + 1] - a1;
    double wj = (c0 - x) / (y - x);
    double lo = a0 + wj * d0;
    *out0 = lo + wi * (a1 + wj * d1 - lo);
    if (c1 >= y && j < last) {
        j = bisect_right(ax, T->nc, c1) - 1;
        j = j > last ? last : j;
        x = ax[j], y = ax[j + 1];
        a0 = r0[j], a1 = r1[j];
        d0 = r0[j + 1] - a0, d1 = r1[j + 1] - a1;
    }
    wj = (c1 - x) / (y - x);
    lo = a0 + wj * d0;
    *out1 = lo + wi * (a1 + wj * d1 - lo);
}

/* StepTable.mixed; n_whole >= 0 is a whole batch size (the rows' cell), < 0 means n = 0.0 */
static double tab_mixed(const Table *T, i64 n_whole, double ctx, double p, double span) {
    i64 i;
    double wi;
    if (n_whole > 0) {
        i = T->row_i[n_whole];
        wi = T->row_w[n_whole];
    } else {
        i = 0, wi = 0.0;
    }
    const double *ax = T->c_ax;
    i64 j = clamp_cell(bisect_right(ax, T->nc, ctx) - 1, T->clast);
    double x = ax[j];
    double wj = (ctx - x) / (ax[j + 1] - x);
    ax = T->p_ax;
    i64 k = clamp_cell(bisect_right(ax, T->np_, p) - 1, T->plast);
    x = ax[k];
    double wk = (p - x) / (ax[k + 1] - x);
    ax = T->l_ax;
    i64 m = clamp_cell(bisect_right(ax, T->nl, span) - 1, T->llast);
    x = ax[m];
    double wm = (span - x) / (ax[m + 1] - x);
    const double *g = T->mix;
    i64 sn = T->sn, sc = T->sc, sp = T->sp;
    i64 b0 = i * sn + j * sc + k * sp + m, b, b1;
    double out = 0.0, f, v0, v1;
    f = (1.0 - wi) * (1.0 - wj);
    if (f != 0.0) {
        b1 = b0 + sp;
        v0 = g[b0] + wm * (g[b0 + 1] - g[b0]);
        v1 = g[b1] + wm * (g[b1 + 1] - g[b1]);
        out += f * (v0 + wk * (v1 - v0));
    }
    f = (1.0 - wi) * wj;
    if (f != 0.0) {
        b = b0 + sc, b1 = b + sp;
        v0 = g[b] + wm * (g[b + 1] - g[b]);
        v1 = g[b1] + wm * (g[b1 + 1] - g[b1]);
        out += f * (v0 + wk * (v1 - v0));
    }
    f = wi * (1.0 - wj);
    if (f != 0.0) {
        b = b0 + sn, b1 = b + sp;
        v0 = g[b] + wm * (g[b + 1] - g[b]);
        v1 = g[b1] + wm * (g[b1 + 1] - g[b1]);
        out += f * (v0 + wk * (v1 - v0));
    }
    f = wi * wj;
    if (f != 0.0) {
        b = b0 + sn + sc, b1 = b + sp;
        v0 = g[b] + wm * (g[b + 1] - g[b]);
        v1 = g[b1] + wm * (g[b1 + 1] - g[b1]);
        out += f * (v0 + wk * (v1 - v0));
    }
    return out;
}

/* ------------------------------------------------------------------ replicas (replica.py) */
typedef struct { i64 rid; double remaining, past; i64 alloc, shared; } Job; /* records.PrefillJob */
typedef struct { i64 rid; int last; } Piece;

/* a growable ring of fixed-size elements: the FCFS queue (queues.FCFSQueue: request ids), the swapped-out and the
 * migrated sequences (records.SwappedSeq), requests waiting for an adapter slot */
typedef struct {
    char *v;
    i64 head, n, cap, size;
} Deque;

static void *dq_at(const Deque *q, i64 k) { return q->v + ((q->head + k) % q->cap) * q->size; }

static int dq_grow(Deque *q) {
    if (q->n < q->cap) return 0;
    i64 cap = q->cap ? 2 * q->cap : 64;
    char *v = malloc((size_t)(cap * q->size));
    if (!v) return -1;
    for (i64 k = 0; k < q->n; k++) memcpy(v + k * q->size, dq_at(q, k), (size_t)q->size);
    free(q->v);
    q->v = v, q->head = 0, q->cap = cap;
    return 0;
}

static int dq_push(Deque *q, const void *x) { /* append */
    if (dq_grow(q)) return -1;
    memcpy(q->v + ((q->head + q->n) % q->cap) * q->size, x, (size_t)q->size);
    q->n++;
    return 0;
}

static int dq_push_front(Deque *q, const void *x) { /* appendleft */
    if (dq_grow(q)) return -1;
    q->head = (q->head + q->cap - 1) % q->cap;
    memcpy(q->v + q->head * q->size, x, (size_t)q->size);
    q->n++;
    return 0;
}

static void dq_pop(Deque *q, void *out) { /* popleft */
    if (out) memcpy(out, q->v + q->head * q->size, (size_t)q->size);
    q->head = (q->head + 1) % q->cap;
    q->n--;
}

static i64 dq_front_id(const Deque *q) { return *(const i64 *)dq_at(q, 0); }

typedef struct { i64 rid; double own, ctx; i64 remaining, shared; } Swapped; /* records.SwappedSeq */

/* an insertion-ordered set of small integer ids (an OrderedDict's keys, a dict used as an ordered set), linked
 * through arrays indexed by id; head is the oldest */
typedef struct { i64 *prev, *next; i64 head, tail, n; } List;

static void list_unlink(List *l, i64 x) {
    i64 pv = l->prev[x], nx = l->next[x];
    if (pv >= 0) l->next[pv] = nx;
    else l->head = nx;
    if (nx >= 0) l->prev[nx] = pv;
    else l->tail = pv;
    l->n--;
}

static void list_append(List *l, i64 x) {
    l->prev[x] = l->tail, l->next[x] = -1;
    if (l->tail >= 0) l->next[l->tail] = x;
    else l->head = x;
    l->tail = x;
    l->n++;
}

typedef struct {
    /* configuration */
    i64 idx, pool, max_seqs, B, kv_total;
    int chunked, prefill_first, schedules_ahead, reserve, swap, prefix_caching, policy; /* 0 fcfs 1 priority 2 slo */
    int role;                                   /* BOTH, PREFILL_ROLE, DECODE_ROLE (disaggregated pools) */
    int fair, block_swap, tenants;              /* priority preemption; swaps copied block by block; either or migration */
    i64 swap_group, kv_transfers_per_block;
    double swap_transfer_s;
    double kv_lat_s, kv_s_per_token;            /* prefill -> decode KV transfer */
    double mbt, ovh, swap_s_per_token, E, dtok, slo_ttft, slo_s_per_token;
    int fe_on;                                  /* the API server's one thread (Replica.fe_*): on when it has a time */
    double fe_req, fe_chunk, fe_every, fe_t, fe_seen;
    i64 fe_done;
    double chunk_max;                           /* the most of one prompt a step takes (one rank's budget: attention DP) */
    int ratio_mode;                             /* SGLang's new-token-ratio admission (Replica.ratio_tick) */
    double ratio, ratio_init, ratio_min, ratio_decay;
    i64 ratio_s, retract_steps;
    i64 adp, balance, hold_from;                /* attention-DP ranks; balancing: hold prompts at most balance steps */
    const Table *T;
    /* state */
    int kind;
    double t_start, t_end, next_t, step_s, slope_s, busy_s, batch_time;
    i64 jump_k, version, steps, kv_used, kv_dec, inbound, preemptions;
    i64 kv_ret, pinned, hit_tokens, hits;
    List retained; /* kvcache.KVBlocks.retained: finished turns, oldest first (link arrays shared in Sim) */
    /* adapters.AdapterCache: resident adapters, least recently used first, with requests using each */
    i64 a_slots, a_hits, a_misses, a_evictions, a_in_use;
    i64 *a_count;  /* per adapter id: requests using it (-1: not resident) */
    List a_res;    /* the resident adapters, least recently used first */
    double *a_ready, a_load_s, a_link_free;
    Deque a_wait;                   /* requests waiting for a slot (their adapter is S->adapter[rid]) */
    Deque waiting; /* fcfs */
    EvHeap kwait; /* priority, slo-aware (queues._KeyedQueue): t = key, seq = order, a = rid; a preempted request
                   * goes in at (-inf, -order) */
    i64 kcount;   /* entries ever pushed (their order) */
    Deque swapped;  /* Swapped */
    Deque migrated; /* Swapped (own unused): (rid, ctx, remaining, shared) arrived by live migration */
    i64 *pending;
    i64 n_pending, cap_pending;
    Job *pre; /* prefilling, in order */
    i64 n_pre;
    Piece *pieces;
    i64 n_pieces;
    /* decodes.DecodeBatch (one token per step) */
    i64 dn, ds;
    double sum_ctx0;
    i64 clip, n_big, lin_n, lin_rem0, lin_s0; /* DecodeBatch.clipped_remaining_sum (clip 0: not tracked) */
    int8_t *d_big;
    EvHeap cross; /* (crossing step, slot, slot, generation) */
    Done *heap;
    i64 nheap, cap_heap;
    i64 *d_rid, *d_blocks, *free_slots, *d_gen, *d_rem0, *d_s0, *d_shared;
    double *d_ctx0, *d_own0;
    i64 n_free;
    List order; /* the slots in join order (DecodeBatch.order) */
    i64 q_sum, *r_hist;         /* on-demand block count: sum of q and the histogram of r (DecodeBatch.blocks_at) */
    int whole;                  /* E and every own0 whole numbers: the histogram count holds */
    /* DecodeBatch's share groups: sequences sharing each group's cached blocks and their shared tokens */
    i64 *g_n, *g_sum, sh_n, sh_sum, sh_ctas, sh_sms;
    double sh_distinct, sh_cap;
} Rep;

typedef struct {
    /* requests */
    i64 n;
    const i64 *isl, *osl, *prefix, *parent, *child;
    const double *think, *priority;
    double *first, *finish, *arrival;
    i64 *ret_blocks, *ret_prev, *ret_next; /* per request: its retained blocks (0: none) and LRU links */
    const i64 *adapter;                    /* per request: its LoRA adapter (NULL: none served) */
    const i64 *share;                      /* per request: its share group (Requests.share_group) */
    i64 n_groups;
    i64 slot_next;                         /* a shared closed loop: the next request a completion releases (-1: none) */
    i64 mig_threshold, mig_count;          /* multitenant.Migrator (threshold -1: no migration) */
    double mig_copy_s, mig_downtime_s, *mig_log; /* (ctx, g, t1, t2) of the first MIG_LOG migrations */
    Swapped *moving;                       /* per request: a migration in flight (Simulator.moving) */
    i64 n_adapters;
    i64 *gen, *preempted, *served_by, *pool_of;
    int8_t *rejected;
    /* replicas and routing */
    Rep *reps;
    i64 n_reps, n_pools, router, threshold, rr;
    i64 *pool_start, *pool_count; /* the entry pools' replicas: reps[pool_start[p] .. + pool_count[p]], p < n_pools */
    i64 *entry, n_entry, *decode, n_decode; /* entry replicas (they take new requests), decode-pool replicas */
    int multi;
    EvHeap rheap, dyn;
    i64 seq, completed;
    double tie_now; i64 tie_k; /* Simulator.tie_now / tie_k: follow-ups released at one instant, spaced RELEASE_GAP_S */
    void (*progress)(i64, i64);
    int oom;
} Sim;

/* the waiting queue of the replica's policy (queues.py): FCFS deque or keyed heap */
static i64 wq_len(const Rep *r) { return r->policy ? r->kwait.n : r->waiting.n; }

static int wq_push(Sim *S, Rep *r, i64 rid) {
    if (!r->policy) return dq_push(&r->waiting, &rid);
    /* PriorityQueue.key / SLOAwareQueue.key: the priority, or arrival + TTFT target - own prefill time */
    double key = r->policy == 1 ? (S->priority ? S->priority[rid] : 0.0)
                                : S->arrival[rid] + r->slo_ttft - (double)S->isl[rid] * r->slo_s_per_token;
    r->kcount += 1;
    Ev e = {key, r->kcount, rid, 0};
    return ev_push(&r->kwait, e);
}

static int wq_push_front(Rep *r, i64 rid) {
    if (!r->policy) return dq_push_front(&r->waiting, &rid);
    r->kcount += 1;
    Ev e = {-INFINITY, -r->kcount, rid, 0};
    return ev_push(&r->kwait, e);
}

static i64 wq_peek(const Rep *r) { return r->policy ? r->kwait.v[0].a : dq_front_id(&r->waiting); }

static i64 wq_take(Rep *r) {
    if (r->policy) return ev_pop(&r->kwait).a;
    i64 rid;
    dq_pop(&r->waiting, &rid);
    return rid;
}

static i64 outstanding(const Rep *r) {
    return wq_len(r) + r->n_pending + r->n_pre + r->dn + r->swapped.n + r->inbound;
}

static i64 kv_free(const Rep *r) { return r->kv_total - r->kv_used - r->kv_dec - r->kv_ret; }

/* KVBlocks.retain (Replica.retain: only with prefix caching) */
static void kv_retain(Sim *S, Rep *r, i64 rid, i64 blocks) {
    if (!r->prefix_caching || blocks <= 0) return; /* a request finishes once: never retained twice */
    S->ret_blocks[rid] = blocks;
    r->kv_ret += blocks;
    list_append(&r->retained, rid);
}

/* KVBlocks.take_retained */
static i64 kv_take_retained(Sim *S, Rep *r, i64 rid) {
    i64 b = S->ret_blocks[rid];
    S->ret_blocks[rid] = 0;
    list_unlink(&r->retained, rid);
    r->kv_ret -= b;
    return b;
}

/* KVBlocks.evict: retained turns, least recently used first, until need blocks are free */
static int kv_evict(Sim *S, Rep *r, i64 need, i64 keep) {
    while (r->retained.n && need > kv_free(r)) {
        i64 key = r->retained.head;
        if (key == keep) {
            if (r->retained.n == 1) break;
            list_unlink(&r->retained, key);
            list_append(&r->retained, key);
            continue;
        }
        i64 b = S->ret_blocks[key];
        S->ret_blocks[key] = 0;
        list_unlink(&r->retained, key);
        r->kv_ret -= b;
    }
    return need <= kv_free(r);
}

/* Simulator.schedule */
static void schedule(Sim *S, Rep *r, double t) {
    r->next_t = t;
    if (S->multi) {
        S->seq += 1;
        r->version = S->seq;
        Ev e = {t, S->seq, r->idx, 0};
        if (ev_push(&S->rheap, e)) S->oom = 1;
    }
}

/* AdapterCache.acquire: when the adapter is resident for a new request (now on a hit, after its load on a miss);
 * -1 when every slot holds an adapter in use */
static double a_acquire(Rep *r, i64 a, double now) {
    i64 c = r->a_count[a];
    if (c >= 0) {
        r->a_hits += 1;
        r->a_count[a] = c + 1;
        list_unlink(&r->a_res, a);
        list_append(&r->a_res, a);
        if (c == 0) r->a_in_use += 1;
        return now > r->a_ready[a] ? now : r->a_ready[a];
    }
    if (r->a_res.n >= r->a_slots) {
        i64 victim = r->a_res.head;
        while (victim >= 0 && r->a_count[victim] != 0) victim = r->a_res.next[victim];
        if (victim < 0) return -1.0;
        list_unlink(&r->a_res, victim);
        r->a_count[victim] = -1;
        r->a_evictions += 1;
    }
    r->a_misses += 1;
    double start = now > r->a_link_free ? now : r->a_link_free;
    double done = start + r->a_load_s;
    r->a_link_free = done;
    r->a_count[a] = 1;
    list_append(&r->a_res, a);
    r->a_ready[a] = done;
    r->a_in_use += 1;
    return done;
}

/* Simulator._adapter_waiters: slots freed; requests waiting for one load their adapter (in arrival order) */
static void a_waiters(Sim *S, Rep *r, double now) {
    while (r->a_wait.n) {
        i64 rid = dq_front_id(&r->a_wait);
        double ready = a_acquire(r, S->adapter[rid], now);
        if (ready < 0) return;
        dq_pop(&r->a_wait, NULL); /* still counted in the replica's inbound load until it reaches the engine */
        S->seq += 1;
        Ev e = {ready > now ? ready : now, S->seq, rid, ENGINE_IN};
        if (ev_push(&S->dyn, e)) S->oom = 1;
    }
}

/* Simulator.finish: the request's adapter is released; a follow-up turn arrives after its think time (the reply's end
 * seen when the API server's thread has written its last chunk) */
static void finish(Sim *S, i64 rid, double now, Rep *r, i64 blocks) {
    if (r->fe_on && r->fe_seen > now) now = r->fe_seen;
    S->finish[rid] = now;
    S->completed += 1;
    if (S->adapter) { /* AdapterCache.release on the replica that served it */
        Rep *sr = &S->reps[S->served_by[rid]];
        i64 a = S->adapter[rid], c = sr->a_count[a] - 1;
        sr->a_count[a] = c;
        if (c == 0) {
            sr->a_in_use -= 1;
            if (sr->a_wait.n) a_waiters(S, sr, now);
        }
    }
    i64 child = S->child ? S->child[rid] : -1;
    if (S->slot_next >= 0) { /* Simulator.finish: the slot passes to the next request of the list */
        child = S->slot_next < S->n ? S->slot_next : -1;
        S->slot_next += 1;
    } else if (child >= 0 && r->role != DECODE_ROLE) {
        kv_retain(S, r, rid, blocks);
    }
    if (child >= 0) {
        if (now == S->tie_now) S->tie_k += 1; else { S->tie_now = now; S->tie_k = 0; }
        double t = now + S->think[child] + (double)S->tie_k * RELEASE_GAP_S;
        S->arrival[child] = t;
        S->seq += 1;
        Ev e = {t, S->seq, child, ARRIVE};
        if (ev_push(&S->dyn, e)) S->oom = 1;
    }
    if (S->progress && S->completed % 2000 == 0) S->progress(S->completed, S->n);
}

/* Replica._step_end: when the k-th step of the running decode jump ends */
static double step_end(const Rep *r, i64 k) {
    return r->t_start + (double)k * r->step_s + r->slope_s * (double)k * (double)(k - 1) / 2.0;
}

/* Replica._truncate */
static void truncate_jump(Sim *S, Rep *r, double t) {
    double t0 = r->t_start, a = r->step_s, slope = r->slope_s;
    i64 k = r->jump_k, kk;
    double dt = t - t0;
    if (dt <= 0) {
        kk = 1;
    } else if (slope > 0) {
        double b = a - slope / 2.0;
        kk = (i64)ceil((-b + sqrt(b * b + 2.0 * slope * dt)) / slope - 1e-9);
    } else {
        kk = a > 0 ? (i64)ceil(dt / a - 1e-9) : 1;
    }
    if (kk < 1) kk = 1;
    if (kk >= k) return;
    r->jump_k = kk;
    r->t_end = step_end(r, kk);
    schedule(S, r, r->t_end);
}

/* Replica.enqueue */
static void enqueue(Sim *S, Rep *r, i64 rid, double now) {
    if (r->schedules_ahead && r->kind != IDLE) {
        if (r->n_pending == r->cap_pending) {
            i64 cap = r->cap_pending ? 2 * r->cap_pending : 64;
            i64 *v = realloc(r->pending, (size_t)cap * sizeof(i64));
            if (!v) { S->oom = 1; return; }
            r->pending = v, r->cap_pending = cap;
        }
        r->pending[r->n_pending++] = rid;
        if (r->kind == JUMP && r->n_pending == 1 && r->n_pre + r->dn < r->max_seqs) truncate_jump(S, r, now);
        return;
    }
    if (wq_push(S, r, rid)) { S->oom = 1; return; }
    if (r->kind == IDLE)
        schedule(S, r, now);
    else if (r->kind == JUMP && (r->fair || (wq_len(r) == 1 && r->n_pre + r->dn < r->max_seqs)))
        truncate_jump(S, r, now);
}

/* Replica._release_pending */
static void release_pending(Sim *S, Rep *r, double now) {
    for (i64 k = 0; k < r->n_pending; k++)
        if (wq_push(S, r, r->pending[k])) { S->oom = 1; return; }
    r->n_pending = 0;
    if (r->kind == IDLE)
        schedule(S, r, now);
    else if (r->kind == JUMP)
        truncate_jump(S, r, now);
}

/* DecodeBatch.blocks_at: KV blocks the on-demand decodes hold at step s: from the histogram while E and every
 * own0 are whole numbers, else summed over the sequences (whole numbers of blocks: any order gives the same sum) */
static i64 blocks_at(const Rep *r, i64 s) {
    if (!r->dn) return 0;
    i64 B = r->B;
    if (r->whole) {
        i64 S_ = (i64)(r->E * (double)s);
        i64 q = floor_div(S_, B), rr = S_ - q * B, tail = 0;
        if (rr)
            for (i64 k = B - rr; k < B; k++) tail += r->r_hist[k];
        return r->q_sum + r->dn * q + tail;
    }
    double es = r->E * (double)s, total = 0.0;
    for (i64 slot = r->order.head; slot >= 0; slot = r->order.next[slot]) total += ceil((r->d_own0[slot] + es) / (double)B);
    return (i64)total;
}

/* DecodeBatch._count */
static void dec_count(Rep *r, double o0, i64 sign) {
    if (r->whole && o0 != floor(o0)) r->whole = 0; /* a fractional own count (fractional E): summed from now on */
    if (!r->whole) return;
    i64 u = (i64)o0 + r->B - 1, q = floor_div(u, r->B);
    r->q_sum += sign * q;
    r->r_hist[u - q * r->B] += sign;
}

/* DecodeBatch._share: a sequence sharing its group's cached blocks joins (sign 1) or leaves (-1) */
static void dec_share(const Sim *S, Rep *r, i64 rid, i64 shared, i64 sign) {
    i64 g = S->share[rid];
    i64 n = r->g_n[g], t = r->g_sum[g];
    if (n > 0) r->sh_distinct -= (double)t / (double)n;
    n += sign;
    t += sign * shared;
    r->g_n[g] = n, r->g_sum[g] = t;
    r->sh_n += sign;
    r->sh_sum += sign * shared;
    if (n > 0) r->sh_distinct += (double)t / (double)n;
    if (r->sh_n == 0) r->sh_distinct = 0.0;
}

/* DecodeBatch.shared_reread at mean context c: tokens a sequence the step's KV reads come to less */
static double shared_reread(const Rep *r, double c) {
    if (r->sh_n < 2 || r->sh_cap <= 0.0 || r->sh_sms <= 0) return 0.0;
    i64 n = r->dn;
    double distinct = r->sh_distinct;
    i64 wave = n * r->sh_ctas < r->sh_sms ? n * r->sh_ctas : r->sh_sms;
    if (distinct + (double)wave * c / (double)r->sh_ctas > r->sh_cap) return 0.0; /* a wave streams past the cache */
    double excess = (double)r->sh_sum - distinct;
    if (excess <= 0.0) return 0.0;
    return excess / (double)n;
}

/* DecodeBatch.read_ctx: the mean context a decode step's KV reads come to a sequence */
static double read_ctx(const Rep *r) {
    double c = r->sum_ctx0 / (double)r->dn + r->E * (double)r->ds;
    return c - shared_reread(r, c);
}

/* DecodeBatch._lin */
static void lin_add(Rep *r, i64 slot, i64 sign) {
    r->lin_n += sign;
    r->lin_rem0 += sign * r->d_rem0[slot];
    r->lin_s0 += sign * r->d_s0[slot];
}

/* DecodeBatch.join: returns the blocks it adds to the on-demand count */
static i64 dec_join(Sim *S, Rep *r, i64 rid, double ctx, double own, i64 remaining, i64 blocks, i64 shared) {
    i64 slot = r->free_slots[--r->n_free];
    i64 s = r->ds;
    r->d_rid[slot] = rid;
    double c0 = ctx - r->E * (double)s;
    r->d_ctx0[slot] = c0;
    r->d_rem0[slot] = remaining;
    r->d_s0[slot] = s;
    r->d_blocks[slot] = blocks;
    r->d_shared[slot] = shared;
    if (shared > 0 && S->n_groups) dec_share(S, r, rid, shared, 1);
    i64 g = r->d_gen[slot] + 1;
    r->d_gen[slot] = g;
    if (r->clip > 0) {
        if (remaining > r->clip) { /* counts clip until its remaining output falls to clip */
            r->d_big[slot] = 1;
            r->n_big += 1;
            Ev e = {(double)s + (double)(remaining - r->clip) / r->E, slot, slot, g};
            if (ev_push(&r->cross, e)) S->oom = 1;
        } else {
            lin_add(r, slot, 1);
        }
    }
    r->sum_ctx0 += c0;
    r->dn += 1;
    list_append(&r->order, slot); /* order[slot] = None */
    i64 steps = r->E == 1.0 ? remaining : (i64)ceil((double)remaining / r->E);
    Done e = {s + steps, slot, g};
    if (done_push(&r->heap, &r->nheap, &r->cap_heap, e)) S->oom = 1;
    if (!r->reserve) {
        double o0 = (double)(own - r->E * (double)s);
        r->d_own0[slot] = o0;
        dec_count(r, o0, 1);
        return ceil_div((i64)own, r->B);
    }
    return 0;
}

/* DecodeBatch.leave: the request, and (out) the blocks it frees from the on-demand count */
static i64 dec_leave(const Sim *S, Rep *r, i64 slot, i64 *freed) {
    i64 rid = r->d_rid[slot];
    r->d_rid[slot] = -1;
    r->d_gen[slot] += 1;
    r->sum_ctx0 -= r->d_ctx0[slot];
    if (r->d_shared[slot] > 0 && S->n_groups) dec_share(S, r, rid, r->d_shared[slot], -1);
    if (r->clip > 0) {
        if (r->d_big[slot]) {
            r->d_big[slot] = 0;
            r->n_big -= 1;
        } else {
            lin_add(r, slot, -1);
        }
    }
    r->dn -= 1;
    list_unlink(&r->order, slot); /* del order[slot] */
    r->free_slots[r->n_free++] = slot;
    *freed = 0;
    if (!r->reserve) {
        double o0 = r->d_own0[slot];
        dec_count(r, o0, -1);
        *freed = ceil_div((i64)ceil(o0 + r->E * (double)r->ds), r->B);
    }
    return rid;
}

/* drop completion entries of sequences that left early (the loops of _launch_decodes) */
static void dec_clean_top(Rep *r) {
    while (r->d_gen[r->heap[0].slot] != r->heap[0].gen) done_pop(r->heap, &r->nheap);
}

/* Replica._finish_decodes */
static void finish_decodes(Sim *S, Rep *r, double now) {
    while (r->nheap && r->heap[0].step <= r->ds) {
        Done d = done_pop(r->heap, &r->nheap);
        if (r->d_gen[d.slot] != d.gen) continue;
        i64 freed;
        if (r->reserve) {
            i64 blocks = r->d_blocks[d.slot];
            i64 rid = dec_leave(S, r, d.slot, &freed);
            r->kv_used -= blocks;
            finish(S, rid, now, r, blocks);
        } else {
            i64 rid = dec_leave(S, r, d.slot, &freed); /* freed: DecodeBatch.own_blocks before it left */
            r->kv_dec -= freed;
            finish(S, rid, now, r, freed);
        }
    }
}

/* Replica._growth */
static i64 growth(const Rep *r, i64 k) { return blocks_at(r, r->ds + k) - r->kv_dec; }

/* Replica._kv_limit: the largest jump <= k whose block growth fits in the free blocks */
static i64 kv_limit(const Rep *r, i64 k) {
    i64 free_ = kv_free(r);
    if (r->dn * ((i64)ceil((double)k * r->E / (double)r->B) + 1) <= free_) return k;
    i64 lo = 1, hi = k;
    while (lo < hi) {
        i64 mid = (lo + hi + 1) / 2;
        if (growth(r, mid) <= free_) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* multitenant.swap_s: host-link time to swap own tokens of KV one way (one device's share) */
static double swap_s(const Rep *r, double own) {
    double t = own * r->swap_s_per_token;
    if (r->block_swap) {
        i64 blocks = ceil_div((i64)ceil(own), r->B);
        t += (double)(ceil_div(blocks, r->swap_group) * r->kv_transfers_per_block) * r->swap_transfer_s;
    }
    return t;
}

/* DecodeBatch.clipped_remaining_sum */
static double dec_clipped(Rep *r) {
    while (r->cross.n && r->cross.v[0].t <= (double)r->ds) {
        Ev e = ev_pop(&r->cross);
        i64 slot = e.a;
        if (r->d_gen[slot] == e.kind && r->d_big[slot]) {
            r->d_big[slot] = 0;
            r->n_big -= 1;
            lin_add(r, slot, 1);
        }
    }
    return (double)(r->clip * r->n_big) + ((double)r->lin_rem0 - r->E * (double)(r->lin_n * r->ds - r->lin_s0));
}

/* Replica.ratio_tick */
static void ratio_tick(Sim *S, Rep *r, int retracted) {
    if (retracted) {
        i64 total = 0, decoded = 0;
        for (i64 slot = r->order.head; slot >= 0; slot = r->order.next[slot]) {
            i64 t = S->osl[r->d_rid[slot]];
            i64 since = (i64)rint((double)(r->ds - r->d_s0[slot]) * r->E);
            total += t;
            decoded += t - (r->d_rem0[slot] - (r->d_rem0[slot] < since ? r->d_rem0[slot] : since));
        }
        double v = (double)(decoded + r->retract_steps * r->dn) / (double)(total + 1);
        r->ratio = v < 1.0 ? v : 1.0;
    } else if (!r->dn && !r->n_pre) {
        r->ratio = r->ratio_init;
    } else if (r->ds > r->ratio_s) {
        double v = r->ratio - r->ratio_decay * (double)(r->ds - r->ratio_s);
        r->ratio = v > r->ratio_min ? v : r->ratio_min;
    }
    r->ratio_s = r->ds;
}

/* Replica._preempt of the newest decoding sequence, or of ``slot`` (on-demand KV); returns the swap-out time */
static double preempt(Sim *S, Rep *r, i64 slot, int force_swap) {
    if (slot < 0) slot = r->order.tail;
    double own = r->d_own0[slot] + r->E * (double)r->ds;
    double ctx = r->d_ctx0[slot] + r->E * (double)r->ds;
    i64 since = (i64)rint((double)(r->ds - r->d_s0[slot]) * r->E); /* generated_since_join: min(rem0, round((s - s0) E)) */
    i64 rem = r->d_rem0[slot] - (r->d_rem0[slot] < since ? r->d_rem0[slot] : since);
    i64 freed;
    i64 rid = dec_leave(S, r, slot, &freed);
    r->kv_dec -= freed;
    S->gen[rid] = S->osl[rid] - rem;
    S->preempted[rid] += 1;
    r->preemptions += 1;
    if (r->swap || force_swap) {
        Swapped e = {rid, own, ctx, rem, r->d_shared[slot]};
        if (dq_push(&r->swapped, &e)) S->oom = 1;
        return r->block_swap ? swap_s(r, own) : own * r->swap_s_per_token;
    }
    if (wq_push_front(r, rid)) S->oom = 1;
    return 0.0;
}

/* Replica._prefill_done */
static void prefill_done(Sim *S, Rep *r, i64 rid, double now) {
    i64 at = 0;
    while (r->pre[at].rid != rid) at++;
    i64 alloc = r->pre[at].alloc, shared = r->pre[at].shared;
    memmove(r->pre + at, r->pre + at + 1, (size_t)(r->n_pre - at - 1) * sizeof(Job));
    r->n_pre--;
    if (S->first[rid] < 0) S->first[rid] = r->fe_on ? r->fe_seen : now;
    i64 gen = S->gen[rid] + 1;
    S->gen[rid] = gen;
    i64 remaining = S->osl[rid] - gen;
    if (remaining <= 0 || r->role == PREFILL_ROLE) {
        r->kv_used -= alloc;
        if (remaining <= 0) {
            finish(S, rid, now, r, alloc);
        } else { /* Simulator.transfer: the prompt's KV crosses to the decode pool */
            double t = now + r->kv_lat_s + (double)(S->isl[rid] + 1) * r->kv_s_per_token;
            S->seq += 1;
            Ev e = {t, S->seq, rid, KV_IN};
            if (ev_push(&S->dyn, e)) S->oom = 1;
        }
        return;
    }
    i64 ctx = S->isl[rid] + gen;
    if (r->reserve) {
        r->kv_dec += dec_join(S, r, rid, (double)ctx, (double)(ctx - shared), remaining, alloc, shared);
    } else {
        r->kv_used -= alloc;
        r->kv_dec += dec_join(S, r, rid, (double)ctx, (double)(ctx - shared), remaining, 0, shared);
    }
}

/* stepform._launch_decodes (reserve mode) */
static void launch_decodes(Sim *S, Rep *r, double now, double extra, int one_step) {
    i64 n = r->dn;
    dec_clean_top(r);
    i64 k = r->heap[0].step - r->ds;
    if (k < 1 || one_step) {
        k = 1;
    } else {
        if (r->hold_from >= 0) { /* prompts held for balance: the run stops when their wait runs out */
            i64 left = r->balance - (r->ds - r->hold_from);
            if (k > left) k = left;
            if (k < 1) k = 1;
        }
        if (!r->reserve) k = kv_limit(r, k);
    }
    double c = read_ctx(r);
    double a, b, slope;
    if (k > 1) {
        tab_decode_pair(r->T, n, c, c + r->E * (double)(k - 1), &a, &b);
        slope = (b - a) / (double)(k - 1);
    } else {
        a = tab_decode(r->T, (double)n, c);
        slope = 0.0;
    }
    a += extra;
    r->t_start = now;
    r->kind = JUMP;
    r->jump_k = k, r->step_s = a, r->slope_s = slope;
    double t = now + (double)k * a + slope * (double)k * (double)(k - 1) / 2.0;
    r->t_end = t;
    schedule(S, r, t);
}

/* multitenant._blocked: the request cannot start now (the batch is full or its prompt's blocks are not free) */
static int blocked(Sim *S, Rep *r, i64 rid) {
    if (r->dn + r->n_pre >= r->max_seqs) return 1;
    return ceil_div(S->isl[rid] + S->gen[rid] + 1, r->B) > kv_free(r);
}

/* multitenant.priority_preempt: swap out lower-priority decodes while the best waiting request is blocked */
static double priority_preempt(Sim *S, Rep *r) {
    i64 head = wq_peek(r);
    double top = S->priority[head], extra = 0.0;
    while (r->dn && blocked(S, r, head)) {
        i64 worst = -1;
        double wp = top;
        for (i64 slot = r->order.head; slot >= 0; slot = r->order.next[slot]) { /* oldest first: the newest worst goes */
            double p = S->priority[r->d_rid[slot]];
            if (p >= wp && p > top) worst = slot, wp = p;
        }
        if (worst < 0) break;
        extra += preempt(S, r, worst, 1);
    }
    return extra;
}

static Rep *least(Sim *S, i64 start, i64 count);

/* Replica.receive: a migrated request arrives with its KV */
static void receive(Sim *S, Rep *r, Swapped item, double now) {
    if (dq_push(&r->migrated, &item)) S->oom = 1;
    if (r->kind == IDLE)
        schedule(S, r, now);
    else if (r->kind == JUMP && r->n_pre + r->dn < r->max_seqs)
        truncate_jump(S, r, now);
}

/* multitenant.Migrator.check: move the running decode with the shortest context to the least-loaded replica of the
 * pool when this one holds more than the threshold above it (Llumnix) */
static void migrator_check(Sim *S, Rep *src, double now) {
    if (src->role != BOTH || !src->dn) return;
    i64 load = outstanding(src);
    if (load <= S->mig_threshold) return; /* no replica can be that far below it */
    i64 start = S->pool_start[src->pool], count = S->pool_count[src->pool];
    if (count < 2) return;
    Rep *dst = least(S, start, count);
    if (dst == src || load - outstanding(dst) <= S->mig_threshold) return;
    i64 slot = -1;
    for (i64 k = src->order.head; k >= 0; k = src->order.next[k]) /* the shortest context: the cheapest copy */
        if (slot < 0 || src->d_ctx0[k] < src->d_ctx0[slot]) slot = k;
    double ctx = src->d_ctx0[slot] + src->E * (double)src->ds;
    i64 since = (i64)rint((double)(src->ds - src->d_s0[slot]) * src->E);
    i64 rem = src->d_rem0[slot] - (src->d_rem0[slot] < since ? src->d_rem0[slot] : since);
    if (rem < 2) return;
    double t1 = src->kv_lat_s + ctx * src->kv_s_per_token;
    double step = tab_decode(src->T, (double)src->dn, read_ctx(src));
    i64 g = 0;
    if (step > 0) { /* tokens written during the first copy */
        i64 gg = (i64)(t1 / step * src->E);
        g = rem - 1 < gg ? rem - 1 : gg;
    }
    double t2 = src->kv_lat_s + (double)g * src->kv_s_per_token;
    i64 shared = src->d_shared[slot], blocks = src->d_blocks[slot], freed;
    i64 rid = dec_leave(S, src, slot, &freed);
    if (src->reserve)
        src->kv_used -= blocks;
    else
        src->kv_dec -= freed;
    S->gen[rid] = S->osl[rid] - rem + g;
    S->served_by[rid] = dst->idx;
    dst->inbound += 1;
    if (S->mig_count < MIG_LOG) {
        double *l = S->mig_log + 4 * S->mig_count;
        l[0] = ctx, l[1] = (double)g, l[2] = t1, l[3] = t2;
    }
    S->mig_count += 1;
    S->mig_copy_s += t1 + t2;
    S->mig_downtime_s += t2;
    Swapped item = {rid, 0.0, ctx + (double)g, rem - g, shared};
    S->moving[rid] = item; /* Simulator.migrate_in */
    S->seq += 1;
    Ev e = {now + t1 + t2, S->seq, rid, MIGRATE_IN};
    if (ev_push(&S->dyn, e)) S->oom = 1;
}

/* stepform.form_step + _swap_in + _continue_chunks + _admit_prompts + _launch (FCFS, no prefix cache) */
static void form_step(Sim *S, Rep *r, double now) {
    double extra = 0.0;
    int preempted = 0;
    if (r->reserve) {
        if (!(wq_len(r) || r->n_pre || r->swapped.n || r->migrated.n)) {
            if (r->dn)
                launch_decodes(S, r, now, 0.0, 0);
            else
                r->kind = IDLE;
            return;
        }
    } else if (r->dn) {
        while (r->dn && growth(r, 1) > kv_free(r)) {
            extra += preempt(S, r, -1, 0);
            preempted = 1;
        }
    }
    if (r->ratio_mode) ratio_tick(S, r, preempted);
    if (r->tenants && r->fair && wq_len(r) && r->dn && !preempted) /* FastSwitch / vLLM priority: make room */
        extra += priority_preempt(S, r);
    int prefill_only = r->prefill_first && (wq_len(r) || r->n_pre) && !preempted;
    double budget = r->mbt - (prefill_only ? 0.0 : (double)r->dn * r->dtok);
    i64 running = r->dn + r->n_pre;
    double P = 0.0, pairs = 0.0;
    r->n_pieces = 0;
    /* multitenant.admit_migrated: migrated decodes join the batch with their KV (blocks reserved, or on demand) */
    while (r->tenants && r->migrated.n && running < r->max_seqs) {
        Swapped *m = dq_at(&r->migrated, 0);
        double own = m->ctx - (double)m->shared;
        i64 need = ceil_div((i64)ceil(own + (r->reserve ? (double)m->remaining : 1.0)), r->B);
        if (need > kv_free(r) && !kv_evict(S, r, need, -1)) break;
        Swapped w;
        dq_pop(&r->migrated, &w);
        r->inbound -= 1;
        if (r->reserve) {
            r->kv_used += need;
            dec_join(S, r, w.rid, w.ctx, own, w.remaining, need, w.shared);
        } else {
            r->kv_dec += dec_join(S, r, w.rid, w.ctx, own, w.remaining, 0, w.shared);
        }
        S->pool_of[w.rid] = r->pool;
        running += 1;
        budget -= r->dtok;
    }
    /* _swap_in: swapped-out sequences come back first (their KV crosses the host link again) */
    while (r->swapped.n && running < r->max_seqs) {
        Swapped *sw = dq_at(&r->swapped, 0);
        i64 need = ceil_div((i64)ceil(sw->own), r->B) + 1;
        if (need > kv_free(r)) break;
        if (r->fair && wq_len(r) && S->priority[wq_peek(r)] < S->priority[sw->rid]) break; /* a better request waits */
        Swapped w;
        dq_pop(&r->swapped, &w);
        extra += r->block_swap ? swap_s(r, w.own) : w.own * r->swap_s_per_token;
        r->kv_dec += dec_join(S, r, w.rid, w.ctx, w.own, w.remaining, 0, w.shared);
        running += 1;
        if (!prefill_only) budget -= r->dtok;
    }
    /* _continue_chunks */
    i64 n_pre0 = r->n_pre;
    for (i64 q = 0; q < n_pre0; q++) {
        Job *pf = &r->pre[q];
        if (budget <= 0) break;
        double take = pf->remaining <= budget ? pf->remaining : budget;
        if (take > r->chunk_max) take = r->chunk_max;
        if (take <= 0) continue;
        double past = pf->past;
        pf->remaining -= take;
        pf->past += take;
        pairs += take * past + take * (take + 1) / 2.0;
        P += take;
        budget -= take;
        r->pieces[r->n_pieces].rid = pf->rid;
        r->pieces[r->n_pieces].last = pf->remaining <= 0;
        r->n_pieces++;
    }
    /* _admit_decodes: a decode-pool replica admits requests whose prompt's KV arrived; they only need blocks */
    if (r->role == DECODE_ROLE && wq_len(r) && !preempted) {
        i64 B = r->B;
        while (wq_len(r) && running < r->max_seqs) {
            i64 rid = wq_peek(r);
            i64 isl = S->isl[rid], osl = S->osl[rid], gen = S->gen[rid];
            i64 shared = 0;
            if (r->pinned) shared = S->prefix[rid] < isl - 1 ? S->prefix[rid] : isl - 1;
            i64 ctx = isl + gen, own = ctx - shared;
            i64 need = ceil_div(own + (r->reserve ? osl - gen : 1), B);
            if (need > r->kv_total - r->pinned) {
                wq_take(r);
                S->rejected[rid] = 1;
                finish(S, rid, now, r, 0);
                S->finish[rid] = INFINITY;
                continue;
            }
            if (need > kv_free(r) && !kv_evict(S, r, need, -1)) break;
            wq_take(r);
            if (r->reserve) {
                r->kv_used += need;
                dec_join(S, r, rid, (double)ctx, (double)own, osl - gen, need, shared);
            } else {
                r->kv_dec += dec_join(S, r, rid, (double)ctx, (double)own, osl - gen, 0, shared);
            }
            running += 1;
            budget -= r->dtok;
        }
    }
    /* _admit_prompts */
    int hold = 0;
    if (r->role != DECODE_ROLE && wq_len(r) && !preempted && r->balance) { /* attention-DP balancing */
        i64 want = r->max_seqs - running < r->adp ? r->max_seqs - running : r->adp;
        if (r->dn && wq_len(r) < want) {
            if (r->hold_from < 0) r->hold_from = r->ds;
            if (r->ds - r->hold_from < r->balance) hold = 1;
        }
        if (!hold) r->hold_from = -1;
    }
    if (r->role != DECODE_ROLE && wq_len(r) && !preempted && !hold) {
        i64 B = r->B;
        double mbt1 = r->chunk_max; /* the most of one prompt a step takes */
        double ratio = r->ratio_mode ? r->ratio : 0.0, future = 0.0, mine = 0.0;
        if (ratio != 0.0) { /* SGLang: the free blocks must also hold ratio x the outputs still to come (each clipped) */
            i64 pre = 0;
            for (i64 q = 0; q < r->n_pre; q++) {
                i64 left = S->osl[r->pre[q].rid] - S->gen[r->pre[q].rid];
                pre += left < r->clip ? left : r->clip;
            }
            future = ratio * (dec_clipped(r) + (double)pre);
        }
        while (wq_len(r) && running < r->max_seqs) {
            i64 rid = wq_peek(r);
            i64 isl = S->isl[rid], osl = S->osl[rid], gen = S->gen[rid];
            i64 shared = 0, hist = 0, hist_blocks = 0;
            if (r->pinned) shared = S->prefix[rid] < isl - 1 ? S->prefix[rid] : isl - 1;
            i64 par = S->parent ? S->parent[rid] : -1;
            if (par >= 0 && gen == 0 && S->ret_blocks[par] > 0 && S->served_by[par] == r->idx) {
                /* multi-turn: the previous turn's KV is cached here */
                hist = S->isl[par] + S->osl[par] - shared;
                hist_blocks = S->ret_blocks[par];
            }
            i64 prompt = isl + gen - shared - hist;
            i64 own_total = isl + gen - shared + (r->reserve ? osl - gen : 1);
            i64 need = ceil_div(own_total, B) - hist_blocks;
            if (need + hist_blocks > r->kv_total - r->pinned) {
                wq_take(r);
                S->rejected[rid] = 1;
                finish(S, rid, now, r, 0);
                S->finish[rid] = INFINITY;
                continue;
            }
            int split = r->chunked || (double)prompt > mbt1;
            if (!split && (double)prompt > budget && (r->n_pieces || r->dn || extra != 0.0)) break;
            i64 want = need;
            if (ratio != 0.0) {
                mine = ratio * (double)(osl - gen < r->clip ? osl - gen : r->clip);
                want = need + (i64)ceil((future + mine) / (double)B);
            }
            if (want > r->kv_total - r->kv_used - r->kv_dec - r->kv_ret + hist_blocks && !kv_evict(S, r, want - hist_blocks, par))
                break;
            if (ratio != 0.0) future += mine;
            wq_take(r);
            if (hist_blocks) kv_take_retained(S, r, par);
            i64 past = shared + hist;
            if (past > 0) {
                r->hit_tokens += past;
                r->hits += 1;
            }
            i64 alloc = (need > 0 ? need : 0) + hist_blocks;
            r->kv_used += alloc;
            double take;
            if (!split)
                take = (double)prompt;
            else {
                double mb = budget < 0 ? 0.0 : budget;
                take = (double)prompt <= mb ? (double)prompt : mb;
                if (take > mbt1) take = mbt1;
            }
            Job *pf = &r->pre[r->n_pre++];
            pf->rid = rid, pf->remaining = (double)prompt - take, pf->past = (double)past + take, pf->alloc = alloc;
            pf->shared = shared;
            running += 1;
            if (take > 0) {
                pairs += take * (double)past + take * (take + 1) / 2.0;
                P += take;
                budget -= take;
                r->pieces[r->n_pieces].rid = rid;
                r->pieces[r->n_pieces].last = pf->remaining <= 0;
                r->n_pieces++;
            }
            if (budget <= 0) break;
        }
    }
    /* _launch */
    i64 n = r->dn;
    r->t_start = now;
    if (r->n_pieces) {
        double span = 2.0 * pairs / P, gpu;
        if (prefill_only) {
            gpu = tab_mixed(r->T, -1, 1.0, P, span);
            r->kind = PREFILL;
        } else {
            gpu = tab_mixed(r->T, n, n ? read_ctx(r) : 1.0, P, span);
            r->kind = MIXED;
        }
        r->t_end = now + (gpu + extra);
        schedule(S, r, r->t_end);
        return;
    }
    if (!n) {
        if (extra > 0) { /* only swap traffic: accounted as a busy step */
            r->kind = MIXED;
            r->t_end = now + extra;
            schedule(S, r, r->t_end);
            return;
        }
        r->kind = IDLE;
        return;
    }
    launch_decodes(S, r, now, extra, r->n_pre > 0 || extra != 0.0 || preempted);
}

/* Replica._stream_steps: decode steps j0 + 1 .. j1 of the running jump each hand the thread per_step seconds of chunks */
static void fe_stream_steps(Rep *r, i64 j0, i64 j1, double per_step) {
    if (j1 <= j0 || per_step <= 0.0) return;
    double r_first = step_end(r, j0 + 1), r_last = step_end(r, j1);
    double work = (double)(j1 - j0) * per_step, x = r->fe_t + work;
    if (r_first + work > x) x = r_first + work;
    if (r_last + per_step > x) x = r_last + per_step;
    r->fe_t = x;
}

/* Replica.admit: the chunks of the decode steps that ended before t go first, then the request's preparation */
static double fe_admit(Rep *r, double t) {
    if (r->kind == JUMP && r->dn) {
        double dt = t - r->t_start, a = r->step_s, slope = r->slope_s;
        i64 kk = a > 0 ? (i64)(dt / a) : 0;
        while (kk > 0 && (double)kk * a + slope * (double)kk * (double)(kk - 1) / 2.0 > dt) kk--;
        if (kk > r->jump_k - 1) kk = r->jump_k - 1;
        if (kk > r->fe_done) {
            fe_stream_steps(r, r->fe_done, kk, (double)r->dn * r->fe_chunk / r->fe_every);
            r->fe_done = kk;
        }
    }
    r->fe_t = (r->fe_t > t ? r->fe_t : t) + r->fe_req;
    return r->fe_t + r->ovh;
}

/* Replica._stream: at a boundary the ended step's (or the rest of the jump's) chunks go to the thread */
static void fe_stream(Rep *r, int kind, double now) {
    i64 n = kind != PREFILL ? r->dn : 0, firsts = 0;
    double per_step = (double)n * r->fe_chunk / r->fe_every, batch;
    if (kind >= MIXED)
        for (i64 q = 0; q < r->n_pieces; q++) firsts += r->pieces[q].last ? 1 : 0;
    if (kind == JUMP) {
        fe_stream_steps(r, r->fe_done, r->jump_k, per_step);
        batch = per_step;
    } else {
        batch = per_step + (double)firsts * r->fe_chunk;
        r->fe_t = (r->fe_t > now ? r->fe_t : now) + batch;
    }
    r->fe_done = 0;
    double extra = batch - r->fe_chunk, seen = r->fe_t - 0.5 * (extra > 0.0 ? extra : 0.0);
    r->fe_seen = seen > now ? seen : now;
}

/* Replica._boundary (reserve mode) */
static void boundary_(Sim *S, Rep *r, double now) {
    int kind = r->kind;
    if (r->fe_on && kind != IDLE) fe_stream(r, kind, now);
    if (kind != IDLE) {
        double dur = now - r->t_start;
        r->busy_s += dur;
        if (kind != PREFILL) {
            i64 k = kind == JUMP ? r->jump_k : 1;
            r->steps += k;
            r->batch_time += (double)r->dn * dur;
            r->ds += k;
            if (!r->reserve && r->dn) r->kv_dec = blocks_at(r, r->ds);
            if (r->nheap && r->heap[0].step <= r->ds) finish_decodes(S, r, now);
        } else {
            r->steps += 1;
        }
        if (kind >= MIXED) {
            i64 np = r->n_pieces;
            r->n_pieces = 0;
            for (i64 q = 0; q < np; q++)
                if (r->pieces[q].last) prefill_done(S, r, r->pieces[q].rid, now);
        }
    }
    if (S->mig_threshold >= 0) migrator_check(S, r, now);
    if (!r->reserve || wq_len(r) || r->n_pre || r->swapped.n || r->migrated.n) {
        form_step(S, r, now);
        return;
    }
    i64 n = r->dn;
    if (!n) {
        r->kind = IDLE;
        return;
    }
    /* Replica._boundary launches the decodes inline; with no extra time and a whole jump it is _launch_decodes
     * (k * a + 0.0 for one step is the same double as a), so both go through the one function here */
    launch_decodes(S, r, now, 0.0, 0);
}

/* Replica.boundary */
static void boundary(Sim *S, Rep *r, double now) {
    boundary_(S, r, now);
    if (r->n_pending) release_pending(S, r, now);
}

/* routers.least over a run of replicas */
static Rep *least(Sim *S, i64 start, i64 count) {
    Rep *best = NULL;
    i64 bo = 0;
    for (i64 k = start; k < start + count; k++) {
        i64 o = outstanding(&S->reps[k]);
        if (!best || o < bo) best = &S->reps[k], bo = o;
    }
    return best;
}

/* routers.least over a list of replica indices */
static Rep *least_of(Sim *S, const i64 *idx, i64 n) {
    Rep *best = NULL;
    i64 bo = 0;
    for (i64 k = 0; k < n; k++) {
        i64 o = outstanding(&S->reps[idx[k]]);
        if (!best || o < bo) best = &S->reps[idx[k]], bo = o;
    }
    return best;
}

/* Router.pick over the entry pools */
static Rep *route(Sim *S) {
    switch (S->router) {
    case R_ROUND_ROBIN: {
        Rep *r = &S->reps[S->entry[S->rr % S->n_entry]];
        S->rr++;
        return r;
    }
    case R_LEAST:
        return S->n_entry == 1 ? &S->reps[S->entry[0]] : least_of(S, S->entry, S->n_entry);
    case R_STATIC:
        return least(S, S->pool_start[0], S->pool_count[0]);
    default:
        for (i64 p = 0; p < S->n_pools; p++) {
            Rep *best = least(S, S->pool_start[p], S->pool_count[p]);
            if (outstanding(best) <= S->threshold) return best;
        }
        return least(S, S->pool_start[S->n_pools - 1], S->pool_count[S->n_pools - 1]);
    }
}

/* Simulator._arrive */
static void arrive(Sim *S, i64 rid, double t, i64 kind) {
    if (kind == MIGRATE_IN) {
        receive(S, &S->reps[S->served_by[rid]], S->moving[rid], t);
        return;
    }
    if (kind == KV_IN) { /* a prompt's KV reached the decode pool */
        enqueue(S, least_of(S, S->decode, S->n_decode), rid, t);
        return;
    }
    if (kind == ENGINE_IN) {
        Rep *r = &S->reps[S->served_by[rid]];
        r->inbound -= 1;
        enqueue(S, r, rid, t);
        return;
    }
    i64 par = S->parent ? S->parent[rid] : -1;
    Rep *r = par >= 0 ? &S->reps[S->served_by[par]] : NULL; /* session affinity: the previous turn's KV is there */
    if (!r || r->role == DECODE_ROLE) r = route(S);
    S->served_by[rid] = r->idx;
    S->pool_of[rid] = r->pool;
    double t_in = r->fe_on ? fe_admit(r, t) : t + r->ovh; /* on the API server's thread, else a parallel delay */
    if (S->adapter) { /* the request's adapter must be resident (a miss loads it over the host link) */
        double ready = a_acquire(r, S->adapter[rid], t_in);
        if (ready < 0) { /* every slot holds an adapter in use: wait for one (counted as the replica's load) */
            if (dq_push(&r->a_wait, &rid)) S->oom = 1;
            r->inbound += 1;
            return;
        }
        t_in = t_in > ready ? t_in : ready;
    }
    if (t_in > t) {
        r->inbound += 1;
        S->seq += 1;
        Ev e = {t_in, S->seq, rid, ENGINE_IN};
        if (ev_push(&S->dyn, e)) S->oom = 1;
    } else {
        enqueue(S, r, rid, t);
    }
}

/* QueueSampler */
typedef struct { double dt, next; double *t; i64 *w, *r; i64 n; } Sampler;

static double sample(Sampler *q, Sim *S, double t) {
    i64 w = 0, rr = 0;
    for (i64 k = 0; k < S->n_reps; k++) {
        w += wq_len(&S->reps[k]) + S->reps[k].swapped.n;
        rr += S->reps[k].dn + S->reps[k].n_pre;
    }
    q->t[q->n] = t, q->w[q->n] = w, q->r[q->n] = rr;
    q->n++;
    q->next = t + q->dt;
    if (q->n > 4000) {
        i64 m = 0;
        for (i64 k = 0; k < q->n; k += 2, m++) q->t[m] = q->t[k], q->w[m] = q->w[k], q->r[m] = q->r[k];
        q->n = m;
        q->dt *= 2.0;
    }
    return q->next;
}

/* The whole run. ipar: n, n_ext, n_pools, n_reps, router, threshold, max_events (-1: none).
 * ipar[7]: 1 when some request is a follow-up turn (parent, child: -1 for none); ipar[8]: the number of LoRA
 * adapters (adapter: each request's, NULL when no replica serves adapters; pint[12] and pdbl[7]: resident slots
 * and the time of one load); pint[13]: the pool's role (0 both, 1 prefill, 2 decode) and pdbl[8..9] the prefill ->
 * decode KV transfer's latency and seconds per token; pint[14..17]: priority preemption, block-by-block swapping,
 * blocks per copy, copies per block, and pdbl[10] one copy's time; pdbl[11]: the most of one prompt a step takes
 * (the token budget; one rank's share of it under attention DP); pint[18..19] and pdbl[12..14]: SGLang's new-token-ratio admission (on or off, the
 * decode steps a retraction plans for; the ratio's start, floor and fall per decode step), pint[20] the most of a
 * request's outputs to come it counts (0: not tracked); pint[21..22]: attention-DP ranks and the balancing hold in
 * decode steps (0: off); ipar[12]: live migration's load threshold (-1:
 * none), its count, copy and downtime seconds written to mig_out, the first MIG_LOG migrations' (context, tokens
 * written during the copy, t1, t2) to mig_log.
 * dpar: the QueueSampler's first sample time and sampling interval. Per pool p, pint[p*PINT_STRIDE + ...]: max_seqs, B, kv_total, chunked, prefill_first, schedules_ahead, count,
 * reserve, swap, prefix caching, pinned prefix blocks, queue policy (0 fcfs, 1 priority, 2 slo-aware);
 * pdbl[p*PDBL_STRIDE + ...]: mbt, request overhead, swap_s_per_token, tokens per decode step (E),
 * tokens each decoding sequence puts through a step (dtok), the slo-aware queue's TTFT target and prefill s/token;
 * priority: each request's priority (NULL: none); tint[p*6 + ...]: the table's axis lengths
 * (n, c, p, l), its number of rows, its offset in tdat (axes, decode grid, mixed grid, row weights in that
 * order) with the row cells in trow at the same running offset as the rows. Outputs: rep_out[k*10 + ...] =
 * busy_s, batch_time, steps, unfinished, preemptions, prefix-cache hit tokens, hits, adapter hits, loads, evictions; follow-up turns get their
 * arrival times written; preempted[request] counts each request's preemptions; q_t/q_w/q_r (4002 each) and cnt = samples, events, completed.
 * ipar[13]: the slots of a shared closed loop (0: none; each completion releases the next request in order).
 * ipar[14]: share groups (share: each request's group, Requests.share_group); pdbl[15], pint[23..24]: the shared
 * tokens of one layer the last-level cache holds, a sequence's attention CTAs and the SMs (DecodeBatch.reread_cap,
 * ctas, sms: blocks running sequences share read from memory once a step while they and a wave fit; 0: every one's).
 * pdbl[16..18]: the API server thread's time a request and a streamed chunk, and the decode steps between chunks
 * (Replica.fe_req, fe_chunk, fe_every; both times 0: no such thread).
 * ipar[9..11] must repeat PINT_STRIDE, PDBL_STRIDE and REP_OUT_STRIDE (the caller's layout of these arrays).
 * Returns 0, 1 (max_events exceeded), 2 (out of memory) or 3 (the caller's layout is not this file's). */
int fastcore_run(const i64 *ipar, const double *dpar, const i64 *pint, const double *pdbl, const i64 *tint,
                 const double *tdat, const i64 *trow, const double *ext_t, const i64 *ext_id, const i64 *isl,
                 const i64 *osl, const i64 *prefix, const i64 *parent, const i64 *child, const double *think, double *arrival,
                 const double *priority, const i64 *adapter, double *first, double *fin, i64 *gen, i64 *preempted, int8_t *rejected, i64 *served_by, i64 *pool_of,
                 double *rep_out, double *q_t, i64 *q_w, i64 *q_r, i64 *cnt, double *mig_out, double *mig_log,
                 const i64 *share, void (*progress)(i64, i64)) {
    if (ipar[9] != PINT_STRIDE || ipar[10] != PDBL_STRIDE || ipar[11] != REP_OUT_STRIDE) return 3; /* the caller's layout */
    Sim S;
    memset(&S, 0, sizeof S);
    S.tie_now = -INFINITY;
    S.n = ipar[0];
    i64 n_ext = ipar[1];
    S.n_pools = ipar[2], S.n_reps = ipar[3], S.router = ipar[4], S.threshold = ipar[5];
    i64 max_events = ipar[6];
    S.isl = isl, S.osl = osl, S.prefix = prefix, S.think = think, S.arrival = arrival, S.priority = priority;
    S.adapter = adapter, S.n_adapters = ipar[8];
    S.mig_threshold = ipar[12], S.mig_log = mig_log;
    S.slot_next = ipar[13] > 0 ? ipar[13] : -1;
    S.share = share, S.n_groups = share ? ipar[14] : 0;
    if (ipar[7]) { /* follow-up turns: their parents' KV may be retained */
        S.parent = parent, S.child = child;
        S.ret_blocks = calloc((size_t)S.n, sizeof(i64));
        S.ret_prev = malloc((size_t)S.n * sizeof(i64));
        S.ret_next = malloc((size_t)S.n * sizeof(i64));
    }
    S.first = first, S.finish = fin, S.gen = gen, S.preempted = preempted, S.rejected = rejected;
    S.served_by = served_by, S.pool_of = pool_of, S.progress = progress;
    S.multi = S.n_reps > 1;
    Table *tabs = calloc((size_t)S.n_pools, sizeof(Table));
    i64 *pstart = calloc((size_t)S.n_pools, sizeof(i64)), *pcount = calloc((size_t)S.n_pools, sizeof(i64));
    S.reps = calloc((size_t)S.n_reps, sizeof(Rep));
    S.entry = malloc((size_t)S.n_reps * sizeof(i64)), S.decode = malloc((size_t)S.n_reps * sizeof(i64));
    if (S.mig_threshold >= 0) S.moving = malloc((size_t)(S.n ? S.n : 1) * sizeof(Swapped));
    int rc = 0;
    if (!tabs || !pstart || !pcount || !S.reps || !S.entry || !S.decode || (S.mig_threshold >= 0 && !S.moving) ||
        (ipar[7] && (!S.ret_blocks || !S.ret_prev || !S.ret_next))) {
        rc = 2;
        goto out;
    }
    i64 n_entry_pools = 0;
    i64 ridx = 0;
    for (i64 p = 0; p < S.n_pools; p++) {
        Table *T = &tabs[p];
        const i64 *ti = tint + 6 * p;
        T->nn = ti[0], T->nc = ti[1], T->np_ = ti[2], T->nl = ti[3], T->nrows = ti[4];
        const double *d = tdat + ti[5];
        T->n_ax = d, d += T->nn;
        T->c_ax = d, d += T->nc;
        T->p_ax = d, d += T->np_;
        T->l_ax = d, d += T->nl;
        T->dec = d, d += T->nn * T->nc;
        T->mix = d, d += T->nn * T->nc * T->np_ * T->nl;
        T->row_w = d;
        T->row_i = trow + (d - tdat);
        T->nlast = T->nn - 2, T->clast = T->nc - 2, T->plast = T->np_ - 2, T->llast = T->nl - 2;
        T->sp = T->nl, T->sc = T->nl * T->np_, T->sn = T->sc * T->nc;
        const i64 *pi = pint + PINT_STRIDE * p;
        const double *pd = pdbl + PDBL_STRIDE * p;
        if (pi[13] != DECODE_ROLE) { /* Simulator.entry_pools: the pools that take new requests, compacted */
            pstart[n_entry_pools] = ridx, pcount[n_entry_pools] = pi[6];
            n_entry_pools++;
        }
        for (i64 j = 0; j < pi[6]; j++, ridx++) {
            Rep *r = &S.reps[ridx];
            r->idx = ridx, r->pool = p, r->T = T;
            r->role = (int)pi[13], r->kv_lat_s = pd[8], r->kv_s_per_token = pd[9];
            r->fair = (int)pi[14], r->block_swap = (int)pi[15], r->swap_group = pi[16], r->kv_transfers_per_block = pi[17];
            r->swap_transfer_s = pd[10];
            r->chunk_max = pd[11], r->ratio_init = pd[12], r->ratio_min = pd[13], r->ratio_decay = pd[14];
            r->ratio_mode = (int)pi[18], r->retract_steps = pi[19];
            r->ratio = r->ratio_init, r->ratio_s = 0;
            r->clip = pi[20], r->n_big = r->lin_n = r->lin_rem0 = r->lin_s0 = 0;
            r->adp = pi[21], r->balance = pi[22], r->hold_from = -1;
            r->sh_cap = pd[15], r->sh_ctas = pi[23], r->sh_sms = pi[24];
            r->fe_req = pd[16], r->fe_chunk = pd[17], r->fe_every = pd[18];
            r->fe_on = r->fe_req > 0.0 || r->fe_chunk > 0.0;
            r->fe_t = r->fe_seen = -INFINITY, r->fe_done = 0;
            r->tenants = r->fair || S.mig_threshold >= 0;
            if (r->role == DECODE_ROLE) S.decode[S.n_decode++] = ridx;
            else S.entry[S.n_entry++] = ridx;
            r->max_seqs = pi[0], r->B = pi[1], r->kv_total = pi[2];
            r->chunked = (int)pi[3], r->prefill_first = (int)pi[4], r->schedules_ahead = (int)pi[5];
            r->reserve = (int)pi[7], r->swap = (int)pi[8], r->prefix_caching = (int)pi[9], r->policy = (int)pi[11];
            r->pinned = pi[10], r->kv_used = pi[10]; /* KVBlocks.pin: the shared prefix stays resident */
            r->retained = (List){S.ret_prev, S.ret_next, -1, -1, 0}; /* the link arrays are per request, in Sim */
            r->mbt = pd[0], r->ovh = pd[1], r->swap_s_per_token = pd[2];
            r->E = pd[3], r->dtok = pd[4], r->slo_ttft = pd[5], r->slo_s_per_token = pd[6];
            r->whole = r->E == floor(r->E);
            r->a_slots = pi[12], r->a_load_s = pd[7];
            r->a_res.head = r->a_res.tail = -1;
            if (S.adapter) {
                r->a_count = malloc((size_t)S.n_adapters * sizeof(i64));
                r->a_res.prev = malloc((size_t)S.n_adapters * sizeof(i64));
                r->a_res.next = malloc((size_t)S.n_adapters * sizeof(i64));
                r->a_ready = calloc((size_t)S.n_adapters, sizeof(double));
                if (!r->a_count || !r->a_res.prev || !r->a_res.next || !r->a_ready) {
                    rc = 2;
                    goto out;
                }
                for (i64 a = 0; a < S.n_adapters; a++) r->a_count[a] = -1;
            }
            r->kind = IDLE, r->next_t = INFINITY;
            r->waiting.size = r->a_wait.size = sizeof(i64), r->swapped.size = r->migrated.size = sizeof(Swapped);
            i64 cap = r->max_seqs + 1;
            r->pre = malloc((size_t)(cap + 1) * sizeof(Job));
            r->pieces = malloc((size_t)(cap + 1) * sizeof(Piece));
            r->d_rid = malloc((size_t)cap * sizeof(i64));
            r->d_blocks = malloc((size_t)cap * sizeof(i64));
            r->free_slots = malloc((size_t)cap * sizeof(i64));
            r->d_gen = calloc((size_t)cap, sizeof(i64));
            r->d_rem0 = malloc((size_t)cap * sizeof(i64));
            r->d_s0 = malloc((size_t)cap * sizeof(i64));
            r->order = (List){malloc((size_t)cap * sizeof(i64)), malloc((size_t)cap * sizeof(i64)), -1, -1, 0};
            r->d_ctx0 = malloc((size_t)cap * sizeof(double));
            r->d_own0 = malloc((size_t)cap * sizeof(double));
            r->d_shared = malloc((size_t)cap * sizeof(i64));
            r->r_hist = calloc((size_t)r->B, sizeof(i64));
            r->d_big = calloc((size_t)cap, sizeof(int8_t));
            r->g_n = calloc((size_t)(S.n_groups ? S.n_groups : 1), sizeof(i64));
            r->g_sum = calloc((size_t)(S.n_groups ? S.n_groups : 1), sizeof(i64));
            if (!r->g_n || !r->g_sum || !r->d_big || !r->pre || !r->pieces || !r->d_rid || !r->d_blocks || !r->free_slots || !r->d_gen || !r->d_rem0 ||
                !r->d_s0 || !r->order.prev || !r->order.next || !r->d_ctx0 || !r->d_own0 || !r->r_hist || !r->d_shared) {
                rc = 2;
                goto out;
            }
            for (i64 k = 0; k < cap; k++) r->free_slots[k] = cap - 1 - k; /* pops slot 0 first */
            r->n_free = cap;
        }
    }
    S.pool_start = pstart, S.pool_count = pcount, S.n_pools = n_entry_pools; /* the routers see entry pools only */
    Sampler qs = {0};
    qs.t = q_t, qs.w = q_w, qs.r = q_r;
    qs.dt = dpar[1]; /* QueueSampler's first sample time and interval */
    qs.next = dpar[0];
    double ta = n_ext ? ext_t[0] : INFINITY, next_sample = qs.next, t;
    i64 i = 0, events = 0;
    Rep *rep0 = &S.reps[0];
    for (;;) {
        if (!S.multi && !S.dyn.n && rep0->next_t < ta) {
            t = rep0->next_t;
            rep0->next_t = INFINITY;
            boundary(&S, rep0, t);
        } else {
            double td = S.dyn.n ? S.dyn.v[0].t : INFINITY;
            double tr = S.multi ? (S.rheap.n ? S.rheap.v[0].t : INFINITY) : rep0->next_t;
            if (ta <= td && ta <= tr) {
                if (ta == INFINITY) break;
                t = ta;
                i64 rid = ext_id[i];
                i++;
                arrive(&S, rid, t, ARRIVE);
                ta = i < n_ext ? ext_t[i] : INFINITY;
            } else if (td <= tr) {
                Ev e = ev_pop(&S.dyn);
                t = e.t;
                arrive(&S, e.a, t, e.kind);
            } else if (S.multi) {
                Ev e = ev_pop(&S.rheap);
                Rep *r = &S.reps[e.a];
                if (r->version != e.seq) continue;
                t = e.t;
                boundary(&S, r, t);
            } else {
                t = tr;
                rep0->next_t = INFINITY;
                boundary(&S, rep0, t);
            }
        }
        if (S.oom) { rc = 2; goto out; }
        events += 1;
        if (t >= next_sample) next_sample = sample(&qs, &S, t);
        if (max_events >= 0 && events > max_events) { rc = 1; break; }
    }
    cnt[0] = qs.n, cnt[1] = events, cnt[2] = S.completed;
    mig_out[0] = (double)S.mig_count, mig_out[1] = S.mig_copy_s, mig_out[2] = S.mig_downtime_s;
    for (i64 k = 0; k < S.n_reps; k++) {
        Rep *r = &S.reps[k];
        rep_out[REP_OUT_STRIDE * k] = r->busy_s, rep_out[REP_OUT_STRIDE * k + 1] = r->batch_time, rep_out[REP_OUT_STRIDE * k + 2] = (double)r->steps;
        rep_out[REP_OUT_STRIDE * k + 3] = (double)(wq_len(r) + r->n_pending + r->n_pre + r->dn + r->swapped.n);
        rep_out[REP_OUT_STRIDE * k + 4] = (double)r->preemptions;
        rep_out[REP_OUT_STRIDE * k + 5] = (double)r->hit_tokens, rep_out[REP_OUT_STRIDE * k + 6] = (double)r->hits;
        rep_out[REP_OUT_STRIDE * k + 7] = (double)r->a_hits, rep_out[REP_OUT_STRIDE * k + 8] = (double)r->a_misses;
        rep_out[REP_OUT_STRIDE * k + 9] = (double)r->a_evictions;
    }
out:
    if (S.reps)
        for (i64 k = 0; k < S.n_reps; k++) {
            Rep *r = &S.reps[k];
            free(r->waiting.v), free(r->kwait.v), free(r->swapped.v), free(r->migrated.v), free(r->pending), free(r->pre), free(r->pieces), free(r->heap);
            free(r->d_rid), free(r->d_blocks), free(r->free_slots), free(r->d_gen), free(r->d_rem0), free(r->d_s0);
            free(r->order.prev), free(r->order.next), free(r->d_ctx0), free(r->d_own0), free(r->r_hist), free(r->d_shared);
            free(r->a_count), free(r->a_res.prev), free(r->a_res.next), free(r->a_ready), free(r->a_wait.v);
            free(r->d_big), free(r->cross.v), free(r->g_n), free(r->g_sum);
        }
    free(S.rheap.v), free(S.dyn.v), free(S.reps), free(tabs), free(pstart), free(pcount), free(S.entry), free(S.decode);
    free(S.moving);
    free(S.ret_blocks), free(S.ret_prev), free(S.ret_next);
    return rc;
}
