/*
 * Tocsin's OTLP metrics wire scanner: walks the protobuf encoding of a MetricsData /
 * ExportMetricsServiceRequest (field 1: ResourceMetrics) and returns, per data point of
 * gauges, sums, histograms, exponential histograms and summaries, the numbers Tocsin
 * stores, with event ids already hashed. Also the series-memory steps of cumulative
 * histograms (explicit and exponential) and the copying of attribute map columns.
 *
 * Written for Tocsin from the protobuf wire format and opentelemetry-proto's
 * metrics.proto / common.proto / resource.proto field numbers; BLAKE2b from RFC 7693.
 *
 * Contract with pipeline/events/otlp_wire.py: the scanner only accepts what it can read
 * exactly as the protobuf library (upb) reads it. Data points must be in the canonical
 * encoding (fields in ascending order, each singular field once, packed repeated numbers,
 * minimal varints, implicit-presence fields not written at their default), because their
 * bytes are hashed into event ids and kept as rejection payloads, where the Python path
 * uses the library's re-encoding. Anything else -- truncated or malformed bytes, groups,
 * a field twice, a field the scanner does not know inside a data point -- raises
 * WireError naming what and where, and the caller decodes that message with the
 * protobuf library instead (which gives today's reason if the message is really bad).
 * Unknown fields outside data points are skipped. Every read is bounds-checked.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>
#include <float.h>

static PyObject *WireError;

/* ---------------------------------------------------------------- BLAKE2b-64 (RFC 7693) */

typedef struct {
    uint64_t h[8];
    uint64_t t;
    uint8_t buf[128];
    size_t n;
} b2_t;

static const uint64_t B2_IV[8] = {
    0x6a09e667f3bcc908ULL, 0xbb67ae8584caa73bULL, 0x3c6ef372fe94f82bULL,
    0xa54ff53a5f1d36f1ULL, 0x510e527fade682d1ULL, 0x9b05688c2b3e6c1fULL,
    0x1f83d9abfb41bd6bULL, 0x5be0cd19137e2179ULL};

static const uint8_t B2_SIGMA[12][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3}};

static inline uint64_t rotr64(uint64_t x, int r) { return (x >> r) | (x << (64 - r)); }

static inline uint64_t load64(const uint8_t *p) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
#endif
}

#define B2_G(a, b, c, d, x, y)                \
    do {                                      \
        v[a] = v[a] + v[b] + (x);             \
        v[d] = rotr64(v[d] ^ v[a], 32);       \
        v[c] = v[c] + v[d];                   \
        v[b] = rotr64(v[b] ^ v[c], 24);       \
        v[a] = v[a] + v[b] + (y);             \
        v[d] = rotr64(v[d] ^ v[a], 16);       \
        v[c] = v[c] + v[d];                   \
        v[b] = rotr64(v[b] ^ v[c], 63);       \
    } while (0)

static void b2_compress(b2_t *s, const uint8_t *block, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) m[i] = load64(block + 8 * i);
    for (int i = 0; i < 8; i++) {
        v[i] = s->h[i];
        v[i + 8] = B2_IV[i];
    }
    v[12] ^= s->t; /* messages here are far below 2**64 bytes: the high counter stays 0 */
    if (last) v[14] = ~v[14];
    /* unrolled, the message word indexes become constants (about twice as fast) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 12
#endif
    for (int r = 0; r < 12; r++) {
        const uint8_t *sg = B2_SIGMA[r];
        B2_G(0, 4, 8, 12, m[sg[0]], m[sg[1]]);
        B2_G(1, 5, 9, 13, m[sg[2]], m[sg[3]]);
        B2_G(2, 6, 10, 14, m[sg[4]], m[sg[5]]);
        B2_G(3, 7, 11, 15, m[sg[6]], m[sg[7]]);
        B2_G(0, 5, 10, 15, m[sg[8]], m[sg[9]]);
        B2_G(1, 6, 11, 12, m[sg[10]], m[sg[11]]);
        B2_G(2, 7, 8, 13, m[sg[12]], m[sg[13]]);
        B2_G(3, 4, 9, 14, m[sg[14]], m[sg[15]]);
    }
    for (int i = 0; i < 8; i++) s->h[i] ^= v[i] ^ v[i + 8];
}

static void b2_init(b2_t *s) {
    memcpy(s->h, B2_IV, sizeof s->h);
    s->h[0] ^= 0x01010000ULL ^ 8; /* no key, 8-byte digest */
    s->t = 0;
    s->n = 0;
}

static void b2_update(b2_t *s, const uint8_t *p, size_t len) {
    while (len > 0) {
        if (s->n == 128) { /* a full block is compressed only once more data follows */
            s->t += 128;
            b2_compress(s, s->buf, 0);
            s->n = 0;
        }
        size_t take = 128 - s->n;
        if (take > len) take = len;
        memcpy(s->buf + s->n, p, take);
        s->n += take;
        p += take;
        len -= take;
    }
}

/* the digest read as a little-endian integer (int.from_bytes(digest, "little")) */
static uint64_t b2_final(b2_t *s) {
    s->t += s->n;
    memset(s->buf + s->n, 0, 128 - s->n);
    b2_compress(s, s->buf, 1);
    return s->h[0];
}

static uint64_t b2_hash(const uint8_t *p, size_t len) {
    b2_t s;
    b2_init(&s);
    b2_update(&s, p, len);
    return b2_final(&s);
}

/* ---------------------------------------------------------------- growable buffers */

typedef struct {
    char *data;
    size_t len, cap; /* in bytes */
} buf_t;

static int buf_reserve(buf_t *b, size_t more) {
    if (b->len + more <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *p = PyMem_Realloc(b->data, cap);
    if (!p) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

static int buf_append(buf_t *b, const void *p, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

/* ------------------------------------------- byte strings of one scope -> a number */

/* Open addressing over (pointer, length) keys into the message being scanned; used per
 * scope to hash each distinct attribute set once and to number the attribute regions. */
typedef struct {
    const uint8_t *key;
    size_t len;
    uint64_t fnv, value;
} slot_t;

typedef struct {
    slot_t *slots;
    size_t cap, used; /* cap: a power of two */
} table_t;

/* a table hash (not stored anywhere): 8 bytes at a time, then the tail, then mixed */
static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = (h ^ load64(p + i)) * 0x100000001b3ULL, h ^= h >> 29;
    for (; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 32;
    h *= 0xd6e8feb86659fd93ULL;
    return h ^ (h >> 32);
}

static void table_clear(table_t *t) {
    if (t->slots) memset(t->slots, 0, t->cap * sizeof(slot_t));
    t->used = 0;
}

/* the slot of key (its key is NULL when the key is new: fill it, then count it used) */
static slot_t *table_find(table_t *t, const uint8_t *key, size_t len, uint64_t fnv) {
    size_t i = (size_t)fnv & (t->cap - 1);
    for (;;) {
        slot_t *slot = &t->slots[i];
        if (!slot->key || (slot->fnv == fnv && slot->len == len && !memcmp(slot->key, key, len)))
            return slot;
        i = (i + 1) & (t->cap - 1);
    }
}

static int table_grow(table_t *t) {
    if ((t->used + 1) * 2 <= t->cap) return 0;
    size_t cap = t->cap ? t->cap * 2 : 256;
    slot_t *old = t->slots;
    size_t old_cap = t->cap;
    t->slots = PyMem_Calloc(cap, sizeof(slot_t));
    if (!t->slots) {
        t->slots = old;
        PyErr_NoMemory();
        return -1;
    }
    t->cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].key) *table_find(t, old[i].key, old[i].len, old[i].fnv) = old[i];
    PyMem_Free(old);
    return 0;
}

/* ---------------------------------------------------------------- the scan */

/* one data point; mirrored by a numpy dtype in otlp_wire.py. Exponential histograms:
 * value is the zero threshold, the counts run holds the positive buckets' counts then the
 * negative ones' (nneg of them). Summaries: the bounds run holds (quantile, value) pairs. */
typedef struct {
    uint64_t time, start, event, count, count_total;
    double value, sum, min, max, lower0, top, q50, q95, q99;
    int64_t ordinal, origin_start, origin_end, counts_off, bounds_off;
    int32_t metric, region, ncounts, nbounds;
    uint32_t flags, has; /* has: 1 sum, 2 min, 4 max */
    uint64_t zero_count;
    int32_t scale, pos_offset, neg_offset, nneg;
} point_t;

enum { HAS_SUM = 1, HAS_MIN = 2, HAS_MAX = 4 };
enum { K_GAUGE = 0, K_SUM = 1, K_HISTOGRAM = 2, K_EXPONENTIAL = 3, K_SUMMARY = 4 };
/* a data point's message type: NumberDataPoint, HistogramDataPoint,
 * ExponentialHistogramDataPoint, SummaryDataPoint */
enum { C_NUMBER = 0, C_HISTOGRAM = 1, C_EXPONENTIAL = 2, C_SUMMARY = 3 };
#define GOLDEN 0x9E3779B97F4A7C15ULL

typedef struct {
    const uint8_t *base; /* the whole message: offsets are from here */
    const char *err;     /* what is wrong (static text) */
    Py_ssize_t at;       /* where: byte offset in the message */
    buf_t points, counts, bounds;
    PyObject *resources, *scopes, *metrics, *regions; /* lists */
    table_t regions_of[4]; /* per scope and point type: region bytes -> region index */
    table_t hashes;        /* per scope: a point's bytes after its times -> blake2b */
    int64_t ordinal;
} scan_t;

#define FAIL(s, what, where)                     \
    do {                                         \
        (s)->err = (what);                       \
        (s)->at = (Py_ssize_t)((where) - (s)->base); \
        return -1;                               \
    } while (0)

/* a varint at *p (< end); *minimal says whether it used the fewest bytes */
static int read_varint(scan_t *s, const uint8_t **p, const uint8_t *end, uint64_t *out,
                       int *minimal) {
    const uint8_t *q = *p;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (q >= end) FAIL(s, "truncated varint", q);
        uint8_t b = *q++;
        if (i == 9 && b > 1) FAIL(s, "varint longer than 64 bits", q - 1);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            if (minimal) *minimal = (i == 0 || b != 0);
            *out = v;
            *p = q;
            return 0;
        }
    }
    FAIL(s, "varint longer than 10 bytes", q);
}

typedef struct {
    uint32_t field, wire;
    const uint8_t *start; /* the tag's first byte */
    const uint8_t *val;   /* wire 2: the payload; 0/1/5: the value's bytes */
    size_t len;           /* wire 2: payload length */
    uint64_t num;         /* wire 0: the varint; wire 1: the 8 bytes little-endian */
    int minimal;          /* tag (and length or varint value) in the fewest bytes */
} field_t;

/* the next field at *p; fails on truncation, groups, wire types 6/7, field number 0 */
static int next_field(scan_t *s, const uint8_t **p, const uint8_t *end, field_t *f) {
    uint64_t tag;
    int min_tag, min_val = 1;
    f->start = *p;
    if (read_varint(s, p, end, &tag, &min_tag) < 0) return -1;
    if (tag >> 32) FAIL(s, "field number out of range", f->start);
    f->field = (uint32_t)(tag >> 3);
    f->wire = (uint32_t)(tag & 7);
    if (f->field == 0) FAIL(s, "field number 0", f->start);
    switch (f->wire) {
    case 0:
        f->val = *p;
        if (read_varint(s, p, end, &f->num, &min_val) < 0) return -1;
        break;
    case 1:
        if (end - *p < 8) FAIL(s, "truncated 64-bit field", *p);
        f->val = *p;
        f->num = load64(*p);
        *p += 8;
        break;
    case 2: {
        uint64_t len;
        if (read_varint(s, p, end, &len, &min_val) < 0) return -1;
        if (len > (uint64_t)(end - *p)) FAIL(s, "length-delimited field runs past its end", f->start);
        f->val = *p;
        f->len = (size_t)len;
        *p += len;
        break;
    }
    case 5:
        if (end - *p < 4) FAIL(s, "truncated 32-bit field", *p);
        f->val = *p;
        *p += 4;
        break;
    case 3:
    case 4:
        FAIL(s, "group (wire type 3/4): read by the protobuf library", f->start);
    default:
        FAIL(s, "invalid wire type 6/7", f->start);
    }
    f->minimal = min_tag && min_val;
    return 0;
}

static double as_double(uint64_t bits) {
    double d;
    memcpy(&d, &bits, 8);
    return d;
}

/* the bucket quantiles of pipeline.events.otlp_series (explicit_buckets + bucket_quantiles),
 * in the same floating-point operations, for q in 0.5, 0.95, 0.99 */
static void histogram_quantiles(point_t *pt, const uint64_t *counts, const double *bounds) {
    int nc = pt->ncounts, nb = pt->nbounds;
    int has_min = pt->has & HAS_MIN, has_max = pt->has & HAS_MAX;
    double low0, top;
    if (nb == 0) {
        low0 = has_min ? pt->min : 0.0;
        top = has_max ? pt->max : low0;
    } else {
        double first_low = has_min ? pt->min : (bounds[0] > 0 ? 0.0 : bounds[0]);
        low0 = (bounds[0] < first_low) ? bounds[0] : first_low;
        top = (has_max && pt->max >= bounds[nb - 1]) ? pt->max : bounds[nb - 1];
    }
    pt->lower0 = low0;
    pt->top = top;
    pt->q50 = pt->q95 = pt->q99 = NAN;
    int n = nc < nb + 1 ? nc : nb + 1;
    uint64_t total = 0;
    for (int i = 0; i < n; i++) total += counts[i];
    pt->count_total = total;
    if (n == 0 || total == 0) return;
    static const double qs[3] = {0.5, 0.95, 0.99};
    double *outs[3] = {&pt->q50, &pt->q95, &pt->q99};
    for (int k = 0; k < 3; k++) {
        double rank = qs[k] * (double)total;
        int i = 0;
        uint64_t cumulative = 0;
        if (rank > 0) { /* bisect_left over the cumulative counts, capped at the last */
            for (i = 0; i < n; i++) {
                cumulative += counts[i];
                if ((long double)cumulative >= (long double)rank) break;
            }
            if (i == n) i = n - 1; /* then cumulative is the total, the last one's end */
            cumulative -= counts[i];
        } else {
            for (i = 0; i < n && counts[i] == 0; i++) cumulative += counts[i];
        }
        /* here cumulative = the counts below bucket i */
        double lower = i == 0 ? low0 : bounds[i - 1];
        double upper = i < nb ? bounds[i] : top;
        uint64_t inside = counts[i];
        double fraction = inside > 0 ? (rank - (double)cumulative) / (double)inside : 1.0;
        double clamped = (0.0 > fraction) ? 0.0 : fraction;
        clamped = (1.0 < clamped) ? 1.0 : clamped;
        *outs[k] = lower + (upper - lower) * clamped;
    }
}

/* the index of a data point's attribute region (exemplars + attributes) in this scope */
static int region_of(scan_t *s, int cls, Py_ssize_t scope, const uint8_t *a, const uint8_t *b) {
    table_t *t = &s->regions_of[cls];
    if (table_grow(t) < 0) return -2;
    uint64_t fnv = fnv1a(a, b - a);
    slot_t *slot = table_find(t, a, b - a, fnv);
    if (slot->key) return (int)slot->value;
    Py_ssize_t index = PyList_GET_SIZE(s->regions);
    PyObject *entry = Py_BuildValue("(niy#)", scope, cls, (const char *)a, (Py_ssize_t)(b - a));
    int bad = !entry || PyList_Append(s->regions, entry) < 0;
    Py_XDECREF(entry);
    if (bad) return -2;
    slot->key = a;
    slot->len = b - a;
    slot->fnv = fnv;
    slot->value = (uint64_t)index;
    t->used++;
    return (int)index;
}

/* an exponential histogram's Buckets message (offset: sint32, field 1; counts: packed
 * uint64 varints, field 2), canonical only; its counts are appended to s->counts */
static int scan_buckets(scan_t *s, const field_t *bf, int32_t *offset, int32_t *n) {
    const uint8_t *q = bf->val, *end = bf->val + bf->len;
    uint32_t last = 0;
    while (q < end) {
        field_t f;
        if (next_field(s, &q, end, &f) < 0) return -1;
        if (!f.minimal || f.field <= last)
            FAIL(s, "exponential buckets: not in the canonical encoding", f.start);
        last = f.field;
        if (f.field == 1) { /* zigzag: 0 is not written, and it must fit 32 bits */
            if (f.wire != 0 || f.num == 0 || f.num > 0xffffffffULL)
                FAIL(s, "exponential buckets: offset not a canonical sint32", f.start);
            uint32_t z = (uint32_t)f.num;
            *offset = (int32_t)((z >> 1) ^ (0u - (z & 1u)));
        } else if (f.field == 2) {
            if (f.wire != 2 || f.len == 0)
                FAIL(s, "exponential buckets: counts not packed varints", f.start);
            const uint8_t *c = f.val, *cend = f.val + f.len;
            while (c < cend) {
                uint64_t v;
                int minimal;
                const uint8_t *at = c;
                if (read_varint(s, &c, cend, &v, &minimal) < 0) return -1;
                if (!minimal) FAIL(s, "exponential buckets: a count not in its shortest form", at);
                if (*n == 0x7fffffff) FAIL(s, "exponential buckets: too many", at);
                if (buf_append(&s->counts, &v, 8) < 0) return -2;
                (*n)++;
            }
        } else {
            FAIL(s, "exponential buckets: a field this scanner does not read", f.start);
        }
    }
    return 0;
}

/* a summary's ValueAtQuantile (quantile: double, field 1; value: double, field 2; neither
 * written when its bits are 0), canonical only; the pair is appended to s->bounds */
static int scan_quantile(scan_t *s, const field_t *qf) {
    const uint8_t *q = qf->val, *end = qf->val + qf->len;
    uint32_t last = 0;
    double pair[2] = {0.0, 0.0};
    while (q < end) {
        field_t f;
        if (next_field(s, &q, end, &f) < 0) return -1;
        if (!f.minimal || f.field <= last || f.field > 2 || f.wire != 1 || f.num == 0)
            FAIL(s, "summary quantile: not in the canonical encoding", f.start);
        last = f.field;
        pair[f.field - 1] = as_double(f.num);
    }
    return buf_append(&s->bounds, pair, sizeof pair) < 0 ? -2 : 0;
}

/* pow as Python's float ** computes it, when it gives a finite number of normal size:
 * 0 if so, else 1 (Python raises OverflowError past the range; below it, the scanner
 * lets the protobuf library decide) */
static int pow_ok(double x, double y, double *out) {
    *out = pow(x, y);
    return !(isfinite(*out) && fabs(*out) >= DBL_MIN);
}

/* 2 ** (2 ** -scale), the exponential buckets' base (see otlp_series.exponential_buckets) */
static int exp_base(int32_t scale, double *base) {
    double t;
    return pow_ok(2.0, -(double)scale, &t) || pow_ok(2.0, t, base);
}

/* whether every bound of an exponential histogram's buckets is computed without an
 * overflow: base ** k for k in [offset, offset + n] (monotonic in k: its two ends) */
static int exp_bounds_ok(const point_t *pt) {
    double base, x;
    if (exp_base(pt->scale, &base)) return 0;
    int npos = pt->ncounts - pt->nneg;
    if (npos && (pow_ok(base, (double)pt->pos_offset, &x) ||
                 pow_ok(base, (double)pt->pos_offset + npos, &x)))
        return 0;
    if (pt->nneg && (pow_ok(base, (double)pt->neg_offset, &x) ||
                     pow_ok(base, (double)pt->neg_offset + pt->nneg, &x)))
        return 0;
    return 1;
}

/* One data point of class cls (C_NUMBER ... C_SUMMARY; delta: of a delta metric, when
 * a histogram's quantiles are its own). Returns 0, -1 (WireError in s->err) or -2 (a
 * Python error is set). */
static int scan_point(scan_t *s, int cls, int delta, const uint8_t *p, const uint8_t *end,
                      const b2_t *prefix, uint64_t name_id, int32_t metric, Py_ssize_t scope) {
    point_t pt;
    memset(&pt, 0, sizeof pt);
    pt.origin_start = p - s->base;
    pt.origin_end = end - s->base;
    pt.metric = metric;
    pt.ordinal = s->ordinal;
    pt.counts_off = (int64_t)(s->counts.len / 8);
    pt.bounds_off = (int64_t)(s->bounds.len / 8);
    /* the field numbers of this point type: attributes, exemplars, flags, count (fixed64)
     * (exponential histograms' exemplars are left to the protobuf library: 0 here) */
    static const uint32_t F_ATTRS[4] = {7, 9, 1, 7}, F_EXEMPLARS[4] = {5, 8, 0, 0},
                          F_FLAGS[4] = {8, 10, 10, 8}, F_COUNT[4] = {0, 4, 4, 4};
    uint32_t f_attrs = F_ATTRS[cls], f_exemplars = F_EXEMPLARS[cls], f_flags = F_FLAGS[cls];
    const uint8_t *region_a = NULL, *region_b = NULL;
    uint32_t last = 0;
    int has_double = 0, has_int = 0;
    double dvalue = 0.0;
    int64_t ivalue = 0;
    const uint8_t *q = p;
    while (q < end) {
        field_t f;
        if (next_field(s, &q, end, &f) < 0) return -1;
        int region = f.field == f_attrs || f.field == f_exemplars;
        int repeated = region || (cls == C_SUMMARY && f.field == 6);
        if (!f.minimal) FAIL(s, "data point: a varint not in its shortest form", f.start);
        if (f.field < last || (f.field == last && !repeated))
            FAIL(s, "data point: fields out of order or repeated", f.start);
        last = f.field;
        if (region) {
            if (f.wire != 2) FAIL(s, "data point: attributes/exemplars not length-delimited", f.start);
            if (!region_a) region_a = f.start;
            region_b = q;
            continue;
        }
        if (f.field == f_flags) {
            if (f.wire != 0 || f.num == 0 || f.num > 0xffffffffULL)
                FAIL(s, "data point: flags not a canonical uint32", f.start);
            pt.flags = (uint32_t)f.num;
            continue;
        }
        /* start, time, count, zero count: fixed64, not written when 0 */
        if (f.field == 2 || f.field == 3 || f.field == F_COUNT[cls] ||
            (cls == C_EXPONENTIAL && f.field == 7)) {
            if (f.wire != 1 || f.num == 0)
                FAIL(s, "data point: fixed64 time/count not canonical", f.start);
            if (f.field == 2) pt.start = f.num;
            else if (f.field == 3) pt.time = f.num;
            else if (f.field == 7) pt.zero_count = f.num;
            else pt.count = f.num;
            continue;
        }
        if (cls == C_NUMBER && (f.field == 4 || f.field == 6)) { /* as_double / as_int */
            if (f.wire != 1) FAIL(s, "data point: value not a 64-bit field", f.start);
            if (has_double || has_int) FAIL(s, "data point: two values", f.start);
            if (f.field == 4) {
                has_double = 1;
                dvalue = as_double(f.num);
            } else {
                has_int = 1;
                ivalue = (int64_t)f.num;
            }
            continue;
        }
        /* doubles: sum, min, max (optional: written even when 0); a summary's sum and an
         * exponential histogram's zero threshold (implicit: never written as 0) */
        int f_sum = f.field == 5 && cls != C_NUMBER;
        int f_min = (cls == C_HISTOGRAM && f.field == 11) || (cls == C_EXPONENTIAL && f.field == 12);
        int f_max = (cls == C_HISTOGRAM && f.field == 12) || (cls == C_EXPONENTIAL && f.field == 13);
        int f_zero = cls == C_EXPONENTIAL && f.field == 14;
        if (f_sum || f_min || f_max || f_zero) {
            if (f.wire != 1 || ((cls == C_SUMMARY || f_zero) && f.num == 0))
                FAIL(s, "data point: sum/min/max/zero threshold not a canonical double", f.start);
            double d = as_double(f.num);
            if (f_sum) { pt.sum = d; pt.has |= HAS_SUM; }
            else if (f_min) { pt.min = d; pt.has |= HAS_MIN; }
            else if (f_max) { pt.max = d; pt.has |= HAS_MAX; }
            else pt.value = d;
            continue;
        }
        if (cls == C_HISTOGRAM && (f.field == 6 || f.field == 7)) { /* packed counts / bounds */
            if (f.wire != 2 || f.len == 0 || f.len % 8)
                FAIL(s, "histogram point: buckets not packed 64-bit numbers", f.start);
            size_t n = f.len / 8;
            if (n > 0x7fffffff) FAIL(s, "histogram point: too many buckets", f.start);
            buf_t *out = f.field == 6 ? &s->counts : &s->bounds;
            if (buf_reserve(out, f.len) < 0) return -2;
            for (size_t i = 0; i < n; i++) {
                uint64_t v = load64(f.val + 8 * i);
                memcpy(out->data + out->len + 8 * i, &v, 8);
            }
            out->len += f.len;
            if (f.field == 6) pt.ncounts = (int32_t)n;
            else pt.nbounds = (int32_t)n;
            continue;
        }
        if (cls == C_EXPONENTIAL && f.field == 6) { /* scale: sint32, 0 not written */
            if (f.wire != 0 || f.num == 0 || f.num > 0xffffffffULL)
                FAIL(s, "exponential histogram point: scale not a canonical sint32", f.start);
            uint32_t z = (uint32_t)f.num;
            pt.scale = (int32_t)((z >> 1) ^ (0u - (z & 1u)));
            continue;
        }
        if (cls == C_EXPONENTIAL && (f.field == 8 || f.field == 9)) { /* positive, negative */
            if (f.wire != 2) FAIL(s, "exponential histogram point: buckets not a message", f.start);
            int32_t n = 0;
            int r = scan_buckets(s, &f, f.field == 8 ? &pt.pos_offset : &pt.neg_offset, &n);
            if (r < 0) return r;
            if (f.field == 9) pt.nneg = n;
            if (n > 0x7fffffff - pt.ncounts) FAIL(s, "exponential histogram point: too many buckets", f.start);
            pt.ncounts += n;
            continue;
        }
        if (cls == C_SUMMARY && f.field == 6) { /* quantile values */
            if (f.wire != 2) FAIL(s, "summary point: quantile values not messages", f.start);
            int r = scan_quantile(s, &f);
            if (r < 0) return r;
            if (pt.nbounds > 0x7ffffffd) FAIL(s, "summary point: too many quantiles", f.start);
            pt.nbounds += 2;
            continue;
        }
        FAIL(s, "data point: a field this scanner does not read", f.start);
    }
    if (pt.time >> 63 || pt.start >> 63) FAIL(s, "data point: time past year 2262", p);
    /* the Python path's value: as_double or float(as_int) */
    if (cls == C_NUMBER) pt.value = dvalue != 0.0 ? dvalue : (double)ivalue;
    /* the event id: blake2b(scope key + the point's bytes after its leading fixed64
     * fields) + blake2b(name) + time * golden, as pipeline.events.otlp_metrics does */
    const uint8_t *rest = p;
    while (rest < end && (rest[0] & 0x87) == 1) rest += 9;
    if (rest > end) rest = end;
    if (table_grow(&s->hashes) < 0) return -2;
    uint64_t fnv = fnv1a(rest, end - rest);
    slot_t *slot = table_find(&s->hashes, rest, end - rest, fnv);
    if (!slot->key) {
        b2_t h = *prefix;
        b2_update(&h, rest, end - rest);
        slot->key = rest;
        slot->len = end - rest;
        slot->fnv = fnv;
        slot->value = b2_final(&h);
        s->hashes.used++;
    }
    pt.event = slot->value + name_id + pt.time * GOLDEN;
    if (!region_a) region_a = region_b = end;
    int region = region_of(s, cls, scope, region_a, region_b);
    if (region < 0) return -2;
    pt.region = region;
    const uint64_t *counts = (const uint64_t *)(s->counts.data) + pt.counts_off;
    if (cls == C_HISTOGRAM) {
        if (pt.ncounts && pt.ncounts != pt.nbounds + 1) {
            pt.lower0 = pt.top = pt.q50 = pt.q95 = pt.q99 = NAN;
        } else {
            uint64_t total = 0;
            for (int i = 0; i < pt.ncounts; i++) {
                if (total + counts[i] < total) FAIL(s, "histogram point: bucket counts overflow", p);
                total += counts[i];
            }
            /* a cumulative point's quantiles are those of its differences (histogram_step) */
            if (delta)
                histogram_quantiles(&pt, counts, (const double *)(s->bounds.data) + pt.bounds_off);
        }
    } else if (cls == C_EXPONENTIAL) { /* Python's sums of counts are exact: no overflow */
        uint64_t total = pt.zero_count;
        for (int i = 0; i < pt.ncounts; i++) {
            if (total + counts[i] < total) FAIL(s, "exponential histogram point: counts overflow", p);
            total += counts[i];
        }
        if (!exp_bounds_ok(&pt))
            FAIL(s, "exponential histogram point: bucket bounds out of range (library)", p);
    }
    s->ordinal++;
    return buf_append(&s->points, &pt, sizeof pt) < 0 ? -2 : 0;
}


static int check_utf8(scan_t *s, const field_t *f, const char *what) {
    PyObject *text = PyUnicode_DecodeUTF8((const char *)f->val, (Py_ssize_t)f->len, NULL);
    if (!text) {
        PyErr_Clear();
        FAIL(s, what, f->start);
    }
    Py_DECREF(text);
    return 0;
}

static int scan_metric(scan_t *s, const uint8_t *p, const uint8_t *end, const b2_t *prefix,
                       Py_ssize_t scope) {
    const uint8_t *name = NULL, *unit = NULL, *body = NULL, *metric_start = p;
    size_t name_len = 0, unit_len = 0, body_len = 0;
    int kind = -1, seen_desc = 0;
    while (p < end) {
        field_t f;
        if (next_field(s, &p, end, &f) < 0) return -1;
        switch (f.field) {
        case 1:
        case 2:
        case 3:
            if (f.wire != 2) FAIL(s, "metric: name/description/unit not a string", f.start);
            if (check_utf8(s, &f, "metric: name/description/unit not valid UTF-8") < 0) return -1;
            if (f.field == 1) {
                if (name) FAIL(s, "metric: name twice", f.start);
                name = f.val;
                name_len = f.len;
            } else if (f.field == 3) {
                if (unit) FAIL(s, "metric: unit twice", f.start);
                unit = f.val;
                unit_len = f.len;
            } else {
                if (seen_desc) FAIL(s, "metric: description twice", f.start);
                seen_desc = 1;
            }
            break;
        case 5:
        case 7:
        case 9:
        case 10:
        case 11:
            if (f.wire != 2) FAIL(s, "metric: data not a message", f.start);
            if (body) FAIL(s, "metric: data twice", f.start);
            body = f.val;
            body_len = f.len;
            kind = f.field == 5 ? K_GAUGE : f.field == 7 ? K_SUM : f.field == 9 ? K_HISTOGRAM
                 : f.field == 10 ? K_EXPONENTIAL : K_SUMMARY;
            break;
        case 12:
            FAIL(s, "metric: metadata (read by the protobuf library)", f.start);
        default:
            break; /* unknown: skipped */
        }
    }
    if (kind < 0) FAIL(s, "metric without data (rejected by the protobuf path)", metric_start);
    int64_t temporality = 0;
    int monotonic = 0, seen_temporality = 0, seen_monotonic = 0;
    int64_t first_point = (int64_t)(s->points.len / sizeof(point_t));
    int64_t first_ordinal = s->ordinal;
    int32_t metric = (int32_t)PyList_GET_SIZE(s->metrics);
    uint64_t name_id = b2_hash(name ? name : (const uint8_t *)"", name_len);
    const uint8_t *q = body, *bend = body + body_len;
    while (q < bend) { /* first the body's scalars: they may follow the points */
        field_t f;
        if (next_field(s, &q, bend, &f) < 0) return -1;
        if (f.field == 2 && kind != K_GAUGE && kind != K_SUMMARY) {
            if (f.wire != 0 || seen_temporality || f.num > 2)
                FAIL(s, "metric: aggregation temporality not 0, 1 or 2 once", f.start);
            seen_temporality = 1;
            temporality = (int64_t)f.num;
        } else if (f.field == 3 && kind == K_SUM) {
            if (f.wire != 0 || seen_monotonic || f.num > 1)
                FAIL(s, "metric: is_monotonic not a bool once", f.start);
            seen_monotonic = 1;
            monotonic = (int)f.num;
        } else if (f.field == 1 && f.wire != 2) {
            FAIL(s, "metric: data points not messages", f.start);
        }
    }
    q = body;
    while (q < bend) {
        field_t f;
        if (next_field(s, &q, bend, &f) < 0) return -1;
        if (f.field != 1) continue;
        int cls = kind == K_HISTOGRAM ? C_HISTOGRAM : kind == K_EXPONENTIAL ? C_EXPONENTIAL
                : kind == K_SUMMARY ? C_SUMMARY : C_NUMBER;
        int r = scan_point(s, cls, temporality == 1, f.val, f.val + f.len, prefix, name_id,
                           metric, scope);
        if (r < 0) return r;
    }
    PyObject *entry = Py_BuildValue(
        "(ns#s#iLiLLLLL)", scope, name ? (const char *)name : "", (Py_ssize_t)name_len,
        unit ? (const char *)unit : "", (Py_ssize_t)unit_len, kind, (long long)temporality,
        monotonic, (long long)first_point,
        (long long)(s->points.len / sizeof(point_t)), (long long)(metric_start - s->base),
        (long long)(end - s->base), (long long)first_ordinal);
    if (!entry) return -2;
    int r = PyList_Append(s->metrics, entry);
    Py_DECREF(entry);
    return r < 0 ? -2 : 0;
}

/* the value of the last occurrence of a length-delimited field, checking it is one */
static int single_message(scan_t *s, const uint8_t *p, const uint8_t *end, uint32_t field,
                          const char *what, const uint8_t **val, size_t *len) {
    *val = NULL;
    *len = 0;
    while (p < end) {
        field_t f;
        if (next_field(s, &p, end, &f) < 0) return -1;
        if (f.field != field) continue;
        if (f.wire != 2 || *val) FAIL(s, what, f.start);
        *val = f.val;
        *len = f.len;
    }
    return 0;
}

static int scan_scope_metrics(scan_t *s, const uint8_t *p, const uint8_t *end,
                              const uint8_t *resource, size_t resource_len,
                              Py_ssize_t resource_index) {
    const uint8_t *scope, *name = NULL;
    size_t scope_len, name_len = 0;
    if (single_message(s, p, end, 1, "scope metrics: scope twice or not a message", &scope,
                       &scope_len) < 0)
        return -1;
    if (scope) { /* the scope's name (its field 1), for the series' key */
        const uint8_t *q = scope, *qend = scope + scope_len;
        while (q < qend) {
            field_t f;
            if (next_field(s, &q, qend, &f) < 0) return -1;
            if (f.field == 1) {
                if (f.wire != 2 || name) FAIL(s, "scope: name twice or not a string", f.start);
                name = f.val;
                name_len = f.len;
            }
        }
    }
    Py_ssize_t scope_index = PyList_GET_SIZE(s->scopes);
    PyObject *entry = Py_BuildValue("(ny#y#)", resource_index,
                                    scope ? (const char *)scope : "", (Py_ssize_t)scope_len,
                                    name ? (const char *)name : "", (Py_ssize_t)name_len);
    if (!entry) return -2;
    int r = PyList_Append(s->scopes, entry);
    Py_DECREF(entry);
    if (r < 0) return -2;
    b2_t prefix;
    b2_init(&prefix);
    b2_update(&prefix, resource, resource_len);
    b2_update(&prefix, name ? name : (const uint8_t *)"", name_len);
    b2_update(&prefix, (const uint8_t *)"", 1);
    for (int c = 0; c < 4; c++) table_clear(&s->regions_of[c]);
    table_clear(&s->hashes);
    while (p < end) {
        field_t f;
        if (next_field(s, &p, end, &f) < 0) return -1;
        if (f.field == 2) {
            if (f.wire != 2) FAIL(s, "scope metrics: metric not a message", f.start);
            int r2 = scan_metric(s, f.val, f.val + f.len, &prefix, scope_index);
            if (r2 < 0) return r2;
        } else if (f.field == 3) {
            if (f.wire != 2) FAIL(s, "scope metrics: schema_url not a string", f.start);
            if (check_utf8(s, &f, "scope metrics: schema_url not valid UTF-8") < 0) return -1;
        }
    }
    return 0;
}

static int scan_resource_metrics(scan_t *s, const uint8_t *p, const uint8_t *end) {
    const uint8_t *resource;
    size_t resource_len;
    if (single_message(s, p, end, 1, "resource metrics: resource twice or not a message",
                       &resource, &resource_len) < 0)
        return -1;
    Py_ssize_t index = PyList_GET_SIZE(s->resources);
    PyObject *raw = PyBytes_FromStringAndSize(resource ? (const char *)resource : "",
                                              (Py_ssize_t)resource_len);
    if (!raw) return -2;
    int r = PyList_Append(s->resources, raw);
    Py_DECREF(raw);
    if (r < 0) return -2;
    while (p < end) {
        field_t f;
        if (next_field(s, &p, end, &f) < 0) return -1;
        if (f.field == 2) {
            if (f.wire != 2) FAIL(s, "resource metrics: scope metrics not a message", f.start);
            int r2 = scan_scope_metrics(s, f.val, f.val + f.len,
                                        resource ? resource : (const uint8_t *)"",
                                        resource_len, index);
            if (r2 < 0) return r2;
        } else if (f.field == 3) {
            if (f.wire != 2) FAIL(s, "resource metrics: schema_url not a string", f.start);
            if (check_utf8(s, &f, "resource metrics: schema_url not valid UTF-8") < 0) return -1;
        }
    }
    return 0;
}

static PyObject *take_bytes(buf_t *b) {
    return PyBytes_FromStringAndSize(b->data ? b->data : "", (Py_ssize_t)b->len);
}

PyDoc_STRVAR(scan_metrics_doc,
"scan_metrics(data: bytes) -> (resources, scopes, metrics, regions, points, counts, bounds)\n\n"
"Walk an encoded MetricsData / ExportMetricsServiceRequest. resources: each resource's\n"
"bytes; scopes: (resource, scope bytes, scope name bytes); metrics: (scope, name, unit,\n"
"kind, temporality, monotonic, first point, end point, byte start, byte end, first\n"
"ordinal); regions: (scope, point type 0 number / 1 histogram / 2 exponential histogram /\n"
"3 summary, attribute+exemplar bytes); points:\n"
"packed point records; counts / bounds: the histogram buckets, packed. Raises WireError\n"
"(what, at which byte) for anything not read exactly as the protobuf library reads it.");

static PyObject *scan_metrics(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    scan_t s;
    memset(&s, 0, sizeof s);
    s.base = view.buf;
    PyObject *result = NULL;
    s.resources = PyList_New(0);
    s.scopes = PyList_New(0);
    s.metrics = PyList_New(0);
    s.regions = PyList_New(0);
    if (!s.resources || !s.scopes || !s.metrics || !s.regions) goto done;
    const uint8_t *p = view.buf, *end = p + view.len;
    int r = 0;
    while (p < end && r == 0) {
        field_t f;
        r = next_field(&s, &p, end, &f);
        if (r == 0 && f.field == 1) {
            if (f.wire != 2) {
                s.err = "resource metrics not a message";
                s.at = f.start - s.base;
                r = -1;
            } else {
                r = scan_resource_metrics(&s, f.val, f.val + f.len);
            }
        }
    }
    if (r == -1) {
        PyErr_Format(WireError, "%s (at byte %zd of %zd)", s.err, s.at, view.len);
        goto done;
    }
    if (r < 0) goto done;
    PyObject *points = take_bytes(&s.points), *counts = take_bytes(&s.counts),
             *bounds = take_bytes(&s.bounds);
    if (points && counts && bounds)
        result = PyTuple_Pack(7, s.resources, s.scopes, s.metrics, s.regions, points, counts,
                              bounds);
    Py_XDECREF(points);
    Py_XDECREF(counts);
    Py_XDECREF(bounds);
done:
    Py_XDECREF(s.resources);
    Py_XDECREF(s.scopes);
    Py_XDECREF(s.metrics);
    Py_XDECREF(s.regions);
    for (int c = 0; c < 4; c++) PyMem_Free(s.regions_of[c].slots);
    PyMem_Free(s.hashes.slots);
    PyMem_Free(s.points.data);
    PyMem_Free(s.counts.data);
    PyMem_Free(s.bounds.data);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(quantiles_doc,
"quantiles(counts, bounds, spans) -> bytes\n\n"
"Bucket quantiles of explicit-bounds histograms without min/max (cumulative differences):\n"
"counts (uint64) and bounds (float64) packed; spans: per histogram (counts offset, counts,\n"
"bounds offset, bounds) as int64. Returns per histogram (lower, top, p50, p95, p99, total)\n"
"as float64, as pipeline.events.otlp_series computes them.");

static PyObject *quantiles(PyObject *self, PyObject *args) {
    Py_buffer cv, bv, sv;
    if (!PyArg_ParseTuple(args, "y*y*y*", &cv, &bv, &sv)) return NULL;
    PyObject *out = NULL;
    size_t nc_all = cv.len / 8, nb_all = bv.len / 8, n = sv.len / 32;
    double *res = PyMem_Malloc((n ? n : 1) * 6 * sizeof(double));
    if (!res) {
        PyErr_NoMemory();
        goto done;
    }
    for (size_t k = 0; k < n; k++) {
        int64_t span[4];
        memcpy(span, (const char *)sv.buf + 32 * k, 32);
        if (span[0] < 0 || span[1] < 0 || span[2] < 0 || span[3] < 0 ||
            span[1] > 0x7fffffff || span[3] > 0x7fffffff ||
            (uint64_t)span[0] + (uint64_t)span[1] > nc_all ||
            (uint64_t)span[2] + (uint64_t)span[3] > nb_all) {
            PyErr_SetString(PyExc_ValueError, "quantiles: a span outside its buffer");
            goto done;
        }
        point_t pt;
        memset(&pt, 0, sizeof pt);
        pt.ncounts = (int32_t)span[1];
        pt.nbounds = (int32_t)span[3];
        uint64_t total = 0;
        const uint64_t *counts = (const uint64_t *)cv.buf + span[0];
        for (int i = 0; i < pt.ncounts; i++) {
            if (total + counts[i] < total) {
                PyErr_SetString(PyExc_OverflowError, "quantiles: bucket counts overflow");
                goto done;
            }
            total += counts[i];
        }
        histogram_quantiles(&pt, counts, (const double *)bv.buf + span[2]);
        double *r = res + 6 * k;
        r[0] = pt.lower0;
        r[1] = pt.top;
        r[2] = pt.q50;
        r[3] = pt.q95;
        r[4] = pt.q99;
        r[5] = (double)pt.count_total;
    }
    out = PyBytes_FromStringAndSize((const char *)res, (Py_ssize_t)(n * 6 * sizeof(double)));
done:
    PyMem_Free(res);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&sv);
    return out;
}

/* ---------------------------------------------------------------- cumulative histograms */

/* a series memory slot; mirrored by a numpy dtype in otlp_series_slots.py. The previous
 * point: times, count, sum (value, when has_total), bucket counts and bounds as runs in
 * two pools. */
typedef struct {
    uint64_t time, start, count;
    double value;
    int64_t counts_at, ncounts, bounds_at, nbounds, tick, code;
    int8_t form, has_total;
    uint8_t pad[6];
} series_slot_t;

/* what histogram_step found for one point */
typedef struct {
    double seconds, count_rate, sum_rate;
    uint64_t total;
    int status, has_sum;
    point_t q; /* the differences' lowest edge, top and quantiles */
} step_t;

/* a row of a since point (see RowPlan in otlp_wire_rows.py) */
typedef struct {
    int64_t point, sub, code;
    double value;
} step_row_t;

/* a since point with observations: its buckets (see Differences in otlp_wire_rows.py) */
typedef struct {
    int64_t point;
    double seconds, lower0, top;
    int64_t start;
} step_buckets_t;

enum { STEP_SEED = 0, STEP_LATE = 1, STEP_RELAYOUT = 2, STEP_SINCE = 3, STEP_RESET = 4 };

PyDoc_STRVAR(histogram_step_doc,
"histogram_step(points, counts, bounds, indexes, slots, fresh, state, counts_pool,\n"
"               bounds_pool, counts_used, bounds_used, codes)\n"
"    -> (rows, buckets, bucket_counts, late, resets, counts_used, bounds_used)\n\n"
"Cumulative histogram points (records `indexes` (int64) of the scanned `points`, their\n"
"buckets in `counts`/`bounds`) against the previous points of their series: `slots`\n"
"(int64, distinct) in `state` (slot records), `fresh` (uint8: a new series, the point\n"
"only seeds it). A point not newer than the previous one is late (nothing changes);\n"
"another bucket layout is a reset and the point seeds again; else the point gives its\n"
"rows since the previous point, as pipeline.events.otlp_metrics computes them (a count\n"
"that went down or a new start time is a reset: counted from zero): `rows` (point, sub,\n"
"code, value records; `codes`: the count rate's, sum rate's and p50's name codes), and\n"
"for points with observations their `buckets` (point, seconds, lowest edge, top, where\n"
"their differences start in `bucket_counts`, float64). Then remembers every point but\n"
"the late ones: runs of the same length over the slot's own, others appended to the\n"
"pools (the caller leaves room for all). Nothing is changed when it raises.");

static PyObject *histogram_step(PyObject *self, PyObject *args) {
    Py_buffer pv, cv, bv, iv, sv, fv, stv, cpv, bpv;
    Py_ssize_t counts_used, bounds_used, count_rate_code, sum_rate_code, p50_code;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*w*w*w*nn(nnn)", &pv, &cv, &bv, &iv, &sv, &fv,
                          &stv, &cpv, &bpv, &counts_used, &bounds_used, &count_rate_code,
                          &sum_rate_code, &p50_code))
        return NULL;
    PyObject *result = NULL, *rows_out = NULL, *buckets_out = NULL, *counts_out = NULL;
    step_t *steps = NULL;
    uint64_t *diffs = NULL;
    step_row_t *rows = NULL;
    step_buckets_t *bucket_rows = NULL;
    double *bucket_counts = NULL;
    const point_t *points = pv.buf;
    const uint64_t *counts = cv.buf;
    const double *bounds = bv.buf;
    const int64_t *indexes = iv.buf, *slot_of = sv.buf;
    const uint8_t *fresh = fv.buf;
    series_slot_t *state = stv.buf;
    uint64_t *counts_pool = cpv.buf;
    double *bounds_pool = bpv.buf;
    Py_ssize_t n_points = pv.len / (Py_ssize_t)sizeof(point_t), n = iv.len / 8;
    Py_ssize_t n_slots = stv.len / (Py_ssize_t)sizeof(series_slot_t);
    Py_ssize_t n_counts = cv.len / 8, n_bounds = bv.len / 8;
    Py_ssize_t pool_counts = cpv.len / 8, pool_bounds = bpv.len / 8;
    if (sv.len / 8 != n || fv.len != n || counts_used < 0 || bounds_used < 0 ||
        counts_used > pool_counts || bounds_used > pool_bounds) {
        PyErr_SetString(PyExc_ValueError, "histogram_step: arguments of unequal lengths");
        goto done;
    }
    /* first every check, and what each point gives, reading only */
    Py_ssize_t need_counts = 0, need_bounds = 0, n_diffs = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        int64_t i = indexes[k], s = slot_of[k];
        if (i < 0 || i >= n_points || s < 0 || s >= n_slots) {
            PyErr_SetString(PyExc_ValueError, "histogram_step: a point or slot out of range");
            goto done;
        }
        const point_t *pt = points + i;
        const series_slot_t *prev = state + s;
        if (pt->ncounts < 0 || pt->nbounds < 0 || pt->counts_off < 0 || pt->bounds_off < 0 ||
            pt->counts_off + pt->ncounts > n_counts || pt->bounds_off + pt->nbounds > n_bounds ||
            (!fresh[k] && (prev->ncounts < 0 || prev->nbounds < 0 || prev->counts_at < 0 ||
                           prev->bounds_at < 0 ||
                           prev->counts_at + prev->ncounts > counts_used ||
                           prev->bounds_at + prev->nbounds > bounds_used))) {
            PyErr_SetString(PyExc_ValueError, "histogram_step: buckets outside their buffer");
            goto done;
        }
        need_counts += pt->ncounts;
        need_bounds += pt->nbounds;
        if (!fresh[k] && pt->time > prev->time && prev->ncounts == pt->ncounts)
            n_diffs += pt->ncounts;
    }
    if (counts_used + need_counts > pool_counts || bounds_used + need_bounds > pool_bounds) {
        PyErr_SetString(PyExc_ValueError, "histogram_step: no room left in the pools");
        goto done;
    }
    steps = PyMem_Calloc(n ? (size_t)n : 1, sizeof(step_t));
    diffs = PyMem_Malloc((n_diffs ? (size_t)n_diffs : 1) * 8);
    if (!steps || !diffs) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at = 0, n_rows = 0, n_buckets = 0, late = 0, resets = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const point_t *pt = points + indexes[k];
        const series_slot_t *prev = state + slot_of[k];
        step_t *st = steps + k;
        if (fresh[k]) {
            st->status = STEP_SEED;
            continue;
        }
        if (pt->time <= prev->time) {
            st->status = STEP_LATE;
            late++;
            continue;
        }
        int nc = pt->ncounts, nb = pt->nbounds;
        const uint64_t *now = counts + pt->counts_off, *then = counts_pool + prev->counts_at;
        const double *b = bounds + pt->bounds_off, *p_b = bounds_pool + prev->bounds_at;
        int same = prev->ncounts == nc && prev->nbounds == nb;
        for (int j = 0; same && j < nb; j++) same = b[j] == p_b[j]; /* NaN: not the same */
        if (!same) {
            st->status = STEP_RELAYOUT;
            resets++;
            continue;
        }
        int reset = pt->count < prev->count || (pt->start && pt->start != prev->start);
        for (int j = 0; !reset && j < nc; j++) reset = now[j] < then[j];
        uint64_t *d = diffs + at, total = 0;
        for (int j = 0; j < nc; j++) {
            d[j] = reset ? now[j] : now[j] - then[j];
            if (total + d[j] < total) {
                PyErr_SetString(PyExc_OverflowError, "histogram_step: bucket counts overflow");
                goto done;
            }
            total += d[j];
        }
        at += nc;
        resets += reset;
        st->status = reset ? STEP_RESET : STEP_SINCE;
        st->has_sum = (pt->has & HAS_SUM) && (reset || prev->has_total);
        uint64_t d_count = reset ? pt->count : pt->count - prev->count;
        double d_total = reset ? pt->sum : pt->sum - prev->value;
        st->seconds = (double)(pt->time - prev->time) / 1e9; /* newer: no wrap */
        st->count_rate = st->seconds > 0 ? (double)d_count / st->seconds : NAN;
        st->sum_rate = st->seconds > 0 ? d_total / st->seconds : NAN;
        st->q.ncounts = nc;
        st->q.nbounds = nb;
        histogram_quantiles(&st->q, d, b);
        st->total = st->q.count_total;
        n_rows += 1 + (st->has_sum != 0) + (st->total > 0 ? 3 : 0);
        n_buckets += st->total > 0;
    }
    /* the rows and buckets of the since points, in point order */
    rows = PyMem_Malloc((n_rows ? (size_t)n_rows : 1) * sizeof(step_row_t));
    bucket_rows = PyMem_Malloc((n_buckets ? (size_t)n_buckets : 1) * sizeof(step_buckets_t));
    bucket_counts = PyMem_Malloc((at ? (size_t)at : 1) * sizeof(double));
    if (!rows || !bucket_rows || !bucket_counts) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t r = 0, nb_rows = 0, from = 0, to = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const step_t *st = steps + k;
        if (st->status < STEP_SINCE) continue;
        int64_t point = indexes[k], nc = points[point].ncounts;
        rows[r++] = (step_row_t){point, 0, count_rate_code, st->count_rate};
        if (st->has_sum) rows[r++] = (step_row_t){point, 1, sum_rate_code, st->sum_rate};
        if (st->total > 0) {
            int64_t sub = 1 + (st->has_sum != 0);
            rows[r++] = (step_row_t){point, sub, p50_code, st->q.q50};
            rows[r++] = (step_row_t){point, sub + 1, p50_code + 1, st->q.q95};
            rows[r++] = (step_row_t){point, sub + 2, p50_code + 2, st->q.q99};
            bucket_rows[nb_rows++] = (step_buckets_t){point, st->seconds, st->q.lower0,
                                                      st->q.top, to};
            for (int64_t j = 0; j < nc; j++) bucket_counts[to + j] = (double)diffs[from + j];
            to += nc;
        }
        from += nc;
    }
    rows_out = PyBytes_FromStringAndSize((const char *)rows, r * (Py_ssize_t)sizeof(step_row_t));
    buckets_out = PyBytes_FromStringAndSize((const char *)bucket_rows,
                                            nb_rows * (Py_ssize_t)sizeof(step_buckets_t));
    counts_out = PyBytes_FromStringAndSize((const char *)bucket_counts, to * 8);
    if (!rows_out || !buckets_out || !counts_out) goto done;
    /* then remember the points (their slots are distinct: no point reads another's) */
    for (Py_ssize_t k = 0; k < n; k++) {
        if (steps[k].status == STEP_LATE) continue;
        const point_t *pt = points + indexes[k];
        series_slot_t *slot = state + slot_of[k];
        if (fresh[k] || slot->ncounts != pt->ncounts) {
            slot->counts_at = counts_used;
            counts_used += pt->ncounts;
        }
        if (fresh[k] || slot->nbounds != pt->nbounds) {
            slot->bounds_at = bounds_used;
            bounds_used += pt->nbounds;
        }
        memcpy(counts_pool + slot->counts_at, counts + pt->counts_off, 8 * (size_t)pt->ncounts);
        memcpy(bounds_pool + slot->bounds_at, bounds + pt->bounds_off, 8 * (size_t)pt->nbounds);
        slot->ncounts = pt->ncounts;
        slot->nbounds = pt->nbounds;
        slot->time = pt->time;
        slot->start = pt->start;
        slot->count = pt->count;
        slot->has_total = (pt->has & HAS_SUM) != 0;
        slot->value = slot->has_total ? pt->sum : 0.0;
        slot->form = 3;
    }
    result = Py_BuildValue("(OOOnnnn)", rows_out, buckets_out, counts_out, late, resets,
                           counts_used, bounds_used);
done:
    Py_XDECREF(rows_out);
    Py_XDECREF(buckets_out);
    Py_XDECREF(counts_out);
    PyMem_Free(steps);
    PyMem_Free(diffs);
    PyMem_Free(rows);
    PyMem_Free(bucket_rows);
    PyMem_Free(bucket_counts);
    PyBuffer_Release(&pv);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&iv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&stv);
    PyBuffer_Release(&cpv);
    PyBuffer_Release(&bpv);
    return result;
}

/* ---------------------------------------------------------------- exponential histograms */

/* quantiles of buckets (lo[i], up[i]] holding counts[i] (total: their sum, > 0), in the
 * floating-point operations of otlp_series.bucket_quantiles, for q in 0.5, 0.95, 0.99 */
static void bucket_quantiles3(const double *lo, const double *up, const uint64_t *counts,
                              int n, uint64_t total, double out[3]) {
    static const double qs[3] = {0.5, 0.95, 0.99};
    for (int k = 0; k < 3; k++) {
        double rank = qs[k] * (double)total; /* > 0 */
        uint64_t cumulative = 0;
        int i;
        for (i = 0; i < n; i++) { /* bisect_left over the cumulative counts, capped */
            cumulative += counts[i];
            if ((long double)cumulative >= (long double)rank) break;
        }
        if (i == n) i = n - 1;
        cumulative -= counts[i]; /* the counts below bucket i */
        double fraction = counts[i] > 0 ? (rank - (double)cumulative) / (double)counts[i] : 1.0;
        double clamped = (0.0 > fraction) ? 0.0 : fraction;
        clamped = (1.0 < clamped) ? 1.0 : clamped;
        out[k] = lo[i] + (up[i] - lo[i]) * clamped;
    }
}

/* base ** k for k = offset ... offset + n (n + 1 values), as Python's float ** int */
static void exp_powers(double base, int64_t offset, int n, double *out) {
    for (int i = 0; i <= n; i++) out[i] = pow(base, (double)(offset + i));
}

/* (lowers, uppers, counts) as otlp_series.exponential_buckets builds them: the negative
 * buckets from the highest index down, the zero bucket when it holds any, then the positive
 * ones; returns how many. `powers`: scratch room for max(npos, nneg) + 1 doubles. */
static int exp_buckets(int32_t scale, uint64_t zero, double zero_threshold, int64_t poff,
                       const uint64_t *pos, int npos, int64_t noff, const uint64_t *neg,
                       int nneg, double *powers, double *lo, double *up, uint64_t *c) {
    double base = pow(2.0, pow(2.0, -(double)scale));
    int n = 0;
    exp_powers(base, noff, nneg, powers);
    for (int i = nneg - 1; i >= 0; i--, n++) {
        lo[n] = -powers[i + 1];
        up[n] = -powers[i];
        c[n] = neg[i];
    }
    if (zero) {
        lo[n] = -zero_threshold;
        up[n] = zero_threshold;
        c[n++] = zero;
    }
    exp_powers(base, poff, npos, powers);
    for (int i = 0; i < npos; i++, n++) {
        lo[n] = powers[i];
        up[n] = powers[i + 1];
        c[n] = pos[i];
    }
    return n;
}

/* current - previous of one range of exponential buckets (otlp_series.subtract_indexed):
 * 1 when a previous count has no bucket now or more than it (a reset), else 0 */
static int subtract_indexed(int64_t off, uint64_t *out, int n, int64_t p_off,
                            const uint64_t *prev, int64_t pn) {
    for (int64_t j = 0; j < pn; j++) {
        if (!prev[j]) continue;
        int64_t i = p_off + j - off;
        if (i < 0 || i >= n || out[i] < prev[j]) return 1;
        out[i] -= prev[j];
    }
    return 0;
}

/* a series slot's exponential histogram, in its counts run: this header, then the
 * positive counts, then the negative ones */
enum { EXP_ZERO, EXP_SCALE, EXP_POS_OFFSET, EXP_NEG_OFFSET, EXP_NPOS, EXP_HEADER };
enum { EXP_KNOWN = 0, EXP_FRESH = 1, EXP_DELTA = 2 }; /* a point's mode */

PyDoc_STRVAR(exponential_step_doc,
"exponential_step(points, counts, indexes, slots, modes, state, counts_pool, counts_used,\n"
"                 codes) -> (rows, buckets, lower, upper, bucket_counts, late, resets,\n"
"                            counts_used)\n\n"
"Exponential histogram points (records `indexes` (int64) of the scanned `points`, their\n"
"buckets in `counts`), by `modes` (uint8): 2 delta (its own buckets; `slots` not read),\n"
"1 the first point of a new series (seeds it), 0 against the previous point of its series\n"
"in `slots` (int64, distinct) of `state`: not newer is late (nothing changes), another\n"
"scale is a reset (the point seeds again), else the differences since it, bucket by\n"
"bucket index (a count gone down, a new start time: a reset, counted from zero), as\n"
"pipeline.events.otlp_metrics computes them. Gives `rows` (point, sub, code, value; `codes`:\n"
"the count rate's, sum rate's and p50's name codes) and, for points with observations,\n"
"`buckets` (point, seconds, 0, 0, where its lists start) with the lists' values (float64).\n"
"Then remembers every cumulative point but the late ones in its slot (its counts run in\n"
"`counts_pool`: the caller leaves room for 5 + its buckets each). Nothing is changed when\n"
"it raises.");

static PyObject *exponential_step(PyObject *self, PyObject *args) {
    Py_buffer pv, cv, iv, sv, mv, stv, cpv;
    Py_ssize_t counts_used, count_rate_code, sum_rate_code, p50_code;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*w*w*n(nnn)", &pv, &cv, &iv, &sv, &mv, &stv, &cpv,
                          &counts_used, &count_rate_code, &sum_rate_code, &p50_code))
        return NULL;
    PyObject *result = NULL;
    uint8_t *status = NULL;
    step_row_t *rows = NULL;
    step_buckets_t *bucket_rows = NULL;
    double *lower = NULL, *upper = NULL, *values = NULL, *powers = NULL;
    uint64_t *d = NULL;
    const point_t *points = pv.buf;
    const uint64_t *counts = cv.buf;
    const int64_t *indexes = iv.buf, *slot_of = sv.buf;
    const uint8_t *modes = mv.buf;
    series_slot_t *state = stv.buf;
    uint64_t *pool = cpv.buf;
    Py_ssize_t n_points = pv.len / (Py_ssize_t)sizeof(point_t), n = iv.len / 8;
    Py_ssize_t n_slots = stv.len / (Py_ssize_t)sizeof(series_slot_t), n_counts = cv.len / 8;
    Py_ssize_t pool_counts = cpv.len / 8, need = 0, most = 0, max_values = 0;
    if (sv.len / 8 != n || mv.len != n || counts_used < 0 || counts_used > pool_counts) {
        PyErr_SetString(PyExc_ValueError, "exponential_step: arguments of unequal lengths");
        goto done;
    }
    /* first every check, reading only */
    for (Py_ssize_t k = 0; k < n; k++) {
        int64_t i = indexes[k], s = slot_of[k];
        if (i < 0 || i >= n_points || modes[k] > EXP_DELTA ||
            (modes[k] != EXP_DELTA && (s < 0 || s >= n_slots))) {
            PyErr_SetString(PyExc_ValueError, "exponential_step: a point or slot out of range");
            goto done;
        }
        const point_t *pt = points + i;
        if (pt->ncounts < 0 || pt->nneg < 0 || pt->nneg > pt->ncounts || pt->counts_off < 0 ||
            pt->counts_off + pt->ncounts > n_counts) {
            PyErr_SetString(PyExc_ValueError, "exponential_step: buckets outside their buffer");
            goto done;
        }
        if (modes[k] == EXP_KNOWN) {
            const series_slot_t *prev = state + s;
            if (prev->ncounts < EXP_HEADER || prev->counts_at < 0 ||
                prev->counts_at + prev->ncounts > counts_used ||
                pool[prev->counts_at + EXP_NPOS] > (uint64_t)(prev->ncounts - EXP_HEADER)) {
                PyErr_SetString(PyExc_ValueError, "exponential_step: a slot outside its pool");
                goto done;
            }
        }
        if (modes[k] != EXP_DELTA) need += EXP_HEADER + pt->ncounts;
        if (pt->ncounts + 1 > most) most = pt->ncounts + 1;
        max_values += pt->ncounts + 1;
    }
    if (counts_used + need > pool_counts) {
        PyErr_SetString(PyExc_ValueError, "exponential_step: no room left in the pool");
        goto done;
    }
    status = PyMem_Calloc(n ? (size_t)n : 1, 1);
    rows = PyMem_Malloc((n ? (size_t)n : 1) * 5 * sizeof(step_row_t));
    bucket_rows = PyMem_Malloc((n ? (size_t)n : 1) * sizeof(step_buckets_t));
    lower = PyMem_Malloc((size_t)(max_values + 1) * sizeof(double));
    upper = PyMem_Malloc((size_t)(max_values + 1) * sizeof(double));
    values = PyMem_Malloc((size_t)(max_values + 1) * sizeof(double));
    powers = PyMem_Malloc((size_t)(most + 1) * sizeof(double));
    d = PyMem_Malloc((size_t)(2 * most + 1) * sizeof(uint64_t)); /* differences, then buckets */
    if (!status || !rows || !bucket_rows || !lower || !upper || !values || !powers || !d) {
        PyErr_NoMemory();
        goto done;
    }
    /* then each point's rows and buckets (outputs only) */
    Py_ssize_t r = 0, nb_rows = 0, at = 0, late = 0, resets = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const point_t *pt = points + indexes[k];
        const uint64_t *now = counts + pt->counts_off;
        int npos = pt->ncounts - pt->nneg, nneg = pt->nneg;
        uint64_t d_zero = pt->zero_count, d_count = pt->count;
        double d_total = pt->sum, seconds;
        int has_sum = (pt->has & HAS_SUM) != 0, rates = 1;
        memcpy(d, now, 8 * (size_t)pt->ncounts); /* positive then negative */
        if (modes[k] == EXP_FRESH) {
            status[k] = 1; /* remember */
            continue;
        }
        if (modes[k] == EXP_DELTA) { /* rates only with a start time */
            rates = pt->start != 0;
            seconds = rates ? (double)((int64_t)pt->time - (int64_t)pt->start) / 1e9 : 0.0;
        } else {
            const series_slot_t *prev = state + slot_of[k];
            const uint64_t *run = pool + prev->counts_at;
            if (pt->time <= prev->time) {
                late++;
                continue;
            }
            status[k] = 1;
            if ((int64_t)run[EXP_SCALE] != pt->scale) { /* rescaled: seeds again */
                resets++;
                continue;
            }
            int64_t p_npos = (int64_t)run[EXP_NPOS];
            int reset = subtract_indexed(pt->pos_offset, d, npos, (int64_t)run[EXP_POS_OFFSET],
                                         run + EXP_HEADER, p_npos) ||
                        subtract_indexed(pt->neg_offset, d + npos, nneg,
                                         (int64_t)run[EXP_NEG_OFFSET],
                                         run + EXP_HEADER + p_npos,
                                         prev->ncounts - EXP_HEADER - p_npos) ||
                        pt->zero_count < run[EXP_ZERO] || pt->count < prev->count ||
                        (pt->start && pt->start != prev->start);
            if (reset) {
                resets++;
                memcpy(d, now, 8 * (size_t)pt->ncounts);
                has_sum = has_sum != 0;
            } else {
                d_zero = pt->zero_count - run[EXP_ZERO];
                d_count = pt->count - prev->count;
                has_sum = has_sum && prev->has_total;
                d_total = pt->sum - prev->value;
            }
            seconds = (double)(pt->time - prev->time) / 1e9; /* newer: no wrap */
        }
        uint64_t *c = d + most;
        int nb = exp_buckets(pt->scale, d_zero, pt->value, pt->pos_offset, d, npos,
                             pt->neg_offset, d + npos, nneg, powers, lower + at, upper + at, c);
        uint64_t total = 0;
        for (int j = 0; j < nb; j++) {
            if (total + c[j] < total) {
                PyErr_SetString(PyExc_OverflowError, "exponential_step: counts overflow");
                goto done;
            }
            total += c[j];
        }
        int64_t point = indexes[k], sub = 0;
        if (rates) {
            rows[r++] = (step_row_t){point, sub++, count_rate_code,
                                     seconds > 0 ? (double)d_count / seconds : NAN};
            if (has_sum)
                rows[r++] = (step_row_t){point, sub++, sum_rate_code,
                                         seconds > 0 ? d_total / seconds : NAN};
        }
        if (total > 0) {
            double q[3];
            bucket_quantiles3(lower + at, upper + at, c, nb, total, q);
            for (int j = 0; j < 3; j++)
                rows[r++] = (step_row_t){point, sub++, p50_code + j, q[j]};
            bucket_rows[nb_rows++] = (step_buckets_t){point, seconds, 0.0, 0.0, at};
            for (int j = 0; j < nb; j++) values[at + j] = (double)c[j];
            at += nb;
        }
    }
    /* then remember the points (their slots are distinct: no point reads another's) */
    for (Py_ssize_t k = 0; k < n; k++) {
        if (!status[k]) continue;
        const point_t *pt = points + indexes[k];
        series_slot_t *slot = state + slot_of[k];
        int64_t length = EXP_HEADER + pt->ncounts;
        if (modes[k] == EXP_FRESH || slot->ncounts != length) {
            slot->counts_at = counts_used;
            counts_used += length;
        }
        uint64_t *run = pool + slot->counts_at;
        run[EXP_ZERO] = pt->zero_count;
        run[EXP_SCALE] = (uint64_t)(int64_t)pt->scale;
        run[EXP_POS_OFFSET] = (uint64_t)(int64_t)pt->pos_offset;
        run[EXP_NEG_OFFSET] = (uint64_t)(int64_t)pt->neg_offset;
        run[EXP_NPOS] = (uint64_t)(pt->ncounts - pt->nneg);
        memcpy(run + EXP_HEADER, counts + pt->counts_off, 8 * (size_t)pt->ncounts);
        slot->ncounts = length;
        slot->nbounds = slot->bounds_at = 0;
        slot->time = pt->time;
        slot->start = pt->start;
        slot->count = pt->count;
        slot->has_total = (pt->has & HAS_SUM) != 0;
        slot->value = slot->has_total ? pt->sum : 0.0;
        slot->form = 4;
    }
    result = Py_BuildValue("(y#y#y#y#y#nnn)", (const char *)rows,
                           r * (Py_ssize_t)sizeof(step_row_t), (const char *)bucket_rows,
                           nb_rows * (Py_ssize_t)sizeof(step_buckets_t), (const char *)lower,
                           at * 8, (const char *)upper, at * 8, (const char *)values, at * 8,
                           late, resets, counts_used);
done:
    PyMem_Free(status);
    PyMem_Free(rows);
    PyMem_Free(bucket_rows);
    PyMem_Free(lower);
    PyMem_Free(upper);
    PyMem_Free(values);
    PyMem_Free(powers);
    PyMem_Free(d);
    PyBuffer_Release(&pv);
    PyBuffer_Release(&cv);
    PyBuffer_Release(&iv);
    PyBuffer_Release(&sv);
    PyBuffer_Release(&mv);
    PyBuffer_Release(&stv);
    PyBuffer_Release(&cpv);
    return result;
}

PyDoc_STRVAR(bucket_lists_doc,
"bucket_lists(points, bounds, buckets, lower0, top, counts_from, counts)\n"
"    -> (offsets, lower, upper, counts)\n\n"
"The metric_buckets lists of the histogram points `buckets` (int64 indexes of the scanned\n"
"`points`, their `bounds`): bucket j of a point runs from `lower0` (j = 0, float64 per\n"
"point) or bound j-1 to bound j or `top`; its count is `counts[counts_from + j]`\n"
"(float64; int64 per point). Returns int32 list offsets and float64 values, packed.");

static PyObject *bucket_lists(PyObject *self, PyObject *args) {
    Py_buffer pv, bv, iv, lv, tv, fv, cv;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*y*", &pv, &bv, &iv, &lv, &tv, &fv, &cv))
        return NULL;
    PyObject *result = NULL;
    int32_t *offsets = NULL;
    double *lower = NULL, *upper = NULL, *out_counts = NULL;
    const point_t *points = pv.buf;
    const double *bounds = bv.buf, *lower0 = lv.buf, *top = tv.buf, *counts = cv.buf;
    const int64_t *idx = iv.buf, *counts_from = fv.buf;
    Py_ssize_t n_points = pv.len / (Py_ssize_t)sizeof(point_t), n = iv.len / 8;
    Py_ssize_t n_bounds = bv.len / 8, n_counts = cv.len / 8, total = 0;
    if (lv.len / 8 != n || tv.len / 8 != n || fv.len / 8 != n) {
        PyErr_SetString(PyExc_ValueError, "bucket_lists: arguments of unequal lengths");
        goto done;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        if (idx[k] < 0 || idx[k] >= n_points) {
            PyErr_SetString(PyExc_ValueError, "bucket_lists: a point out of range");
            goto done;
        }
        const point_t *pt = points + idx[k];
        if (pt->ncounts < 0 || pt->nbounds < 0 || pt->bounds_off < 0 || counts_from[k] < 0 ||
            pt->bounds_off + pt->nbounds > n_bounds || counts_from[k] + pt->ncounts > n_counts) {
            PyErr_SetString(PyExc_ValueError, "bucket_lists: buckets outside their buffer");
            goto done;
        }
        total += pt->ncounts;
        if (total > 0x7fffffff) {
            PyErr_SetString(PyExc_OverflowError, "bucket_lists: too many buckets");
            goto done;
        }
    }
    offsets = PyMem_Malloc((size_t)(n + 1) * sizeof(int32_t));
    lower = PyMem_Malloc((total ? (size_t)total : 1) * sizeof(double));
    upper = PyMem_Malloc((total ? (size_t)total : 1) * sizeof(double));
    out_counts = PyMem_Malloc((total ? (size_t)total : 1) * sizeof(double));
    if (!offsets || !lower || !upper || !out_counts) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at = 0;
    offsets[0] = 0;
    for (Py_ssize_t k = 0; k < n; k++) {
        const point_t *pt = points + idx[k];
        int64_t bo = pt->bounds_off, nb = pt->nbounds;
        for (int64_t j = 0; j < pt->ncounts; j++, at++) {
            /* as numpy indexes them: clipped into the message's bounds, 0 when none */
            int64_t below = bo + j - 1 < 0 ? 0 : bo + j - 1;
            int64_t here = bo + j > n_bounds - 1 ? n_bounds - 1 : bo + j;
            lower[at] = j == 0 ? lower0[k] : n_bounds ? bounds[below] : 0.0;
            upper[at] = j < nb ? (n_bounds ? bounds[here] : 0.0) : top[k];
            out_counts[at] = counts[counts_from[k] + j];
        }
        offsets[k + 1] = (int32_t)at;
    }
    result = Py_BuildValue("(y#y#y#y#)", (const char *)offsets, (Py_ssize_t)(n + 1) * 4,
                           (const char *)lower, at * 8, (const char *)upper, at * 8,
                           (const char *)out_counts, at * 8);
done:
    PyMem_Free(offsets);
    PyMem_Free(lower);
    PyMem_Free(upper);
    PyMem_Free(out_counts);
    PyBuffer_Release(&pv);
    PyBuffer_Release(&bv);
    PyBuffer_Release(&iv);
    PyBuffer_Release(&lv);
    PyBuffer_Release(&tv);
    PyBuffer_Release(&fv);
    PyBuffer_Release(&cv);
    return result;
}

/* ---------------------------------------------------------------- map columns */

/* the int32 offsets of an Arrow array: n + 1 of them, from 0, never going down, the last
 * at most `limit` */
static int offsets_ok(const int32_t *o, Py_ssize_t n, Py_ssize_t limit) {
    if (o[0] != 0 || o[n] > limit) return 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (o[i + 1] < o[i]) return 0;
    return 1;
}

PyDoc_STRVAR(map_take_doc,
"map_take(offsets, key_offsets, key_data, item_offsets, item_data, rows)\n"
"    -> (offsets, key_offsets, key_data, item_offsets, item_data)\n\n"
"The buffers of an Arrow map<string, string> array (no nulls, offsets from 0) taken at\n"
"`rows` (int64): the same as Array.take, copying each entry's bytes once. Raises\n"
"OverflowError past int32 offsets (the caller then takes with Arrow).");

static PyObject *map_take(PyObject *self, PyObject *args) {
    Py_buffer ov, kov, kdv, iov, idv, rv;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*", &ov, &kov, &kdv, &iov, &idv, &rv)) return NULL;
    PyObject *result = NULL, *out[5] = {NULL, NULL, NULL, NULL, NULL};
    const int32_t *offsets = ov.buf, *k_off = kov.buf, *i_off = iov.buf;
    const char *k_data = kdv.buf, *i_data = idv.buf;
    const int64_t *rows = rv.buf;
    Py_ssize_t n_maps = ov.len / 4 - 1, n_entries = kov.len / 4 - 1, n = rv.len / 8;
    if (n_maps < 0 || n_entries < 0 || iov.len != kov.len ||
        !offsets_ok(offsets, n_maps, n_entries) || !offsets_ok(k_off, n_entries, kdv.len) ||
        !offsets_ok(i_off, n_entries, idv.len)) {
        PyErr_SetString(PyExc_ValueError, "map_take: offsets outside their buffers");
        goto done;
    }
    int64_t entries = 0, k_bytes = 0, i_bytes = 0; /* of the result */
    for (Py_ssize_t r = 0; r < n; r++) {
        int64_t m = rows[r];
        if (m < 0 || m >= n_maps) {
            PyErr_SetString(PyExc_IndexError, "map_take: a row out of range");
            goto done;
        }
        int32_t a = offsets[m], b = offsets[m + 1];
        entries += b - a;
        k_bytes += k_off[b] - k_off[a];
        i_bytes += i_off[b] - i_off[a];
    }
    if (entries > INT32_MAX || k_bytes > INT32_MAX || i_bytes > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "map_take: past int32 offsets");
        goto done;
    }
    out[0] = PyBytes_FromStringAndSize(NULL, (n + 1) * 4);
    out[1] = PyBytes_FromStringAndSize(NULL, (entries + 1) * 4);
    out[2] = PyBytes_FromStringAndSize(NULL, k_bytes);
    out[3] = PyBytes_FromStringAndSize(NULL, (entries + 1) * 4);
    out[4] = PyBytes_FromStringAndSize(NULL, i_bytes);
    if (!out[0] || !out[1] || !out[2] || !out[3] || !out[4]) goto done;
    int32_t *o = (int32_t *)PyBytes_AS_STRING(out[0]), *ko = (int32_t *)PyBytes_AS_STRING(out[1]),
            *io = (int32_t *)PyBytes_AS_STRING(out[3]);
    char *kd = PyBytes_AS_STRING(out[2]), *id = PyBytes_AS_STRING(out[4]);
    int32_t e = 0, kb = 0, ib = 0;
    o[0] = ko[0] = io[0] = 0;
    for (Py_ssize_t r = 0; r < n; r++) {
        int32_t a = offsets[rows[r]], b = offsets[rows[r] + 1];
        /* a map's entries are contiguous in both children: copy their bytes at once */
        int32_t k_len = k_off[b] - k_off[a], i_len = i_off[b] - i_off[a];
        memcpy(kd + kb, k_data + k_off[a], (size_t)k_len);
        memcpy(id + ib, i_data + i_off[a], (size_t)i_len);
        for (int32_t j = a; j < b; j++, e++) {
            ko[e + 1] = kb + (k_off[j + 1] - k_off[a]);
            io[e + 1] = ib + (i_off[j + 1] - i_off[a]);
        }
        kb += k_len;
        ib += i_len;
        o[r + 1] = e;
    }
    result = PyTuple_Pack(5, out[0], out[1], out[2], out[3], out[4]);
done:
    for (int i = 0; i < 5; i++) Py_XDECREF(out[i]);
    PyBuffer_Release(&ov);
    PyBuffer_Release(&kov);
    PyBuffer_Release(&kdv);
    PyBuffer_Release(&iov);
    PyBuffer_Release(&idv);
    PyBuffer_Release(&rv);
    return result;
}

PyDoc_STRVAR(string_maps_doc,
"string_maps(dicts) -> (offsets, key_offsets, key_data, item_offsets, item_data)\n\n"
"The buffers of an Arrow map<string, string> array of `dicts` (a list of dicts of str to\n"
"str, in their order), keys and values UTF-8 encoded. Raises TypeError on anything else\n"
"(the caller then builds it with Arrow).");

static PyObject *string_maps(PyObject *self, PyObject *arg) {
    if (!PyList_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "string_maps: a list of dicts");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(arg), entries = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(arg, i);
        if (!PyDict_CheckExact(d)) {
            PyErr_SetString(PyExc_TypeError, "string_maps: a list of dicts");
            return NULL;
        }
        entries += PyDict_GET_SIZE(d);
    }
    if (entries > INT32_MAX) {
        PyErr_SetString(PyExc_OverflowError, "string_maps: past int32 offsets");
        return NULL;
    }
    PyObject *result = NULL;
    int32_t *offsets = PyMem_Malloc((size_t)(n + 1) * 4);
    int32_t *k_off = PyMem_Malloc((size_t)(entries + 1) * 4);
    int32_t *i_off = PyMem_Malloc((size_t)(entries + 1) * 4);
    buf_t keys = {NULL, 0, 0}, items = {NULL, 0, 0};
    if (!offsets || !k_off || !i_off) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t e = 0;
    offsets[0] = k_off[0] = i_off[0] = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyList_GET_ITEM(arg, i), *key, *value;
        Py_ssize_t pos = 0, entry = 0;
        while (PyDict_Next(d, &pos, &key, &value)) { /* insertion order, as dict.items() */
            Py_ssize_t k_len, v_len;
            const char *k, *v;
            if (!PyUnicode_CheckExact(key) || !PyUnicode_CheckExact(value) || ++entry > PyDict_GET_SIZE(d)) {
                PyErr_SetString(PyExc_TypeError, "string_maps: keys and values must be str");
                goto done;
            }
            if (!(k = PyUnicode_AsUTF8AndSize(key, &k_len)) ||
                !(v = PyUnicode_AsUTF8AndSize(value, &v_len)) ||
                buf_append(&keys, k, (size_t)k_len) < 0 || buf_append(&items, v, (size_t)v_len) < 0)
                goto done;
            if (keys.len > INT32_MAX || items.len > INT32_MAX) {
                PyErr_SetString(PyExc_OverflowError, "string_maps: past int32 offsets");
                goto done;
            }
            e++;
            k_off[e] = (int32_t)keys.len;
            i_off[e] = (int32_t)items.len;
        }
        offsets[i + 1] = (int32_t)e;
    }
    result = Py_BuildValue("(y#y#y#y#y#)", (const char *)offsets, (n + 1) * 4, (const char *)k_off,
                           (e + 1) * 4, keys.data ? keys.data : "", (Py_ssize_t)keys.len,
                           (const char *)i_off, (e + 1) * 4, items.data ? items.data : "",
                           (Py_ssize_t)items.len);
done:
    PyMem_Free(offsets);
    PyMem_Free(k_off);
    PyMem_Free(i_off);
    PyMem_Free(keys.data);
    PyMem_Free(items.data);
    return result;
}

static PyObject *blake2b64(PyObject *self, PyObject *arg) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    uint64_t h = b2_hash(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLongLong(h);
}

PyDoc_STRVAR(blake2b64_many_doc,
"blake2b64_many(offsets, data, count, first) -> bytes\n\n"
"blake2b64 of each of ``count`` values of an Arrow binary or string array, from its\n"
"int32 offsets buffer and data buffer, from value ``first`` on (the array's offset):\n"
"8 native-endian bytes (a uint64) per value.");

static PyObject *blake2b64_many(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer offsets, data;
    Py_ssize_t count, first;
    if (!PyArg_ParseTuple(args, "y*y*nn", &offsets, &data, &count, &first)) return NULL;
    PyObject *out = NULL;
    if (count < 0 || first < 0 ||
        (size_t)offsets.len < (size_t)(first + count + 1) * sizeof(int32_t)) {
        PyErr_SetString(PyExc_ValueError, "blake2b64_many: offsets too short");
        goto done;
    }
    const int32_t *o = (const int32_t *)offsets.buf + first;
    for (Py_ssize_t i = 0; i < count; i++)
        if (o[i] < 0 || o[i + 1] < o[i] || (Py_ssize_t)o[i + 1] > data.len) {
            PyErr_SetString(PyExc_ValueError, "blake2b64_many: offsets out of the data");
            goto done;
        }
    out = PyBytes_FromStringAndSize(NULL, count * (Py_ssize_t)sizeof(uint64_t));
    if (!out) goto done;
    uint64_t *h = (uint64_t *)PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++)
        h[i] = b2_hash((const uint8_t *)data.buf + o[i], (size_t)(o[i + 1] - o[i]));
    Py_END_ALLOW_THREADS
done:
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&data);
    return out;
}

static PyMethodDef methods[] = {
    {"scan_metrics", scan_metrics, METH_O, scan_metrics_doc},
    {"blake2b64_many", blake2b64_many, METH_VARARGS, blake2b64_many_doc},
    {"quantiles", quantiles, METH_VARARGS, quantiles_doc},
    {"histogram_step", histogram_step, METH_VARARGS, histogram_step_doc},
    {"bucket_lists", bucket_lists, METH_VARARGS, bucket_lists_doc},
    {"exponential_step", exponential_step, METH_VARARGS, exponential_step_doc},
    {"map_take", map_take, METH_VARARGS, map_take_doc},
    {"string_maps", string_maps, METH_O, string_maps_doc},
    {"blake2b64", blake2b64, METH_O,
     "blake2b64(data) -> int: BLAKE2b with an 8-byte digest, read little-endian."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_otlpwire",
                                    "Tocsin's OTLP metrics wire scanner (C).", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__otlpwire(void) {
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    WireError = PyErr_NewException("pipeline.events._otlpwire.WireError", PyExc_ValueError, NULL);
    if (!WireError || PyModule_AddObject(m, "WireError", WireError) < 0) {
        Py_XDECREF(WireError);
        Py_DECREF(m);
        return NULL;
    }
    Py_INCREF(WireError);
    if (PyModule_AddIntConstant(m, "POINT_SIZE", (long)sizeof(point_t)) < 0 ||
        PyModule_AddIntConstant(m, "SLOT_SIZE", (long)sizeof(series_slot_t)) < 0 ||
        PyModule_AddIntConstant(m, "STEP_ROW_SIZE", (long)sizeof(step_row_t)) < 0 ||
        PyModule_AddIntConstant(m, "STEP_BUCKETS_SIZE", (long)sizeof(step_buckets_t)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
