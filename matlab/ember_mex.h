/* Shared by the ember MEX gateways. Uses only the mx/mex API that MATLAB and GNU Octave
 * share, so the same sources build with MATLAB's `mex` and Octave's `mkoctfile --mex`.
 * Temporaries come from mxMalloc, which the host frees itself when a call errors out. */
#ifndef EMBER_MEX_H
#define EMBER_MEX_H

#include "mex.h"
#include "ember.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef enum { OPT_U32, OPT_I32, OPT_F32, OPT_F64, OPT_U64, OPT_CHOICE, OPT_BOOL } ember_opt_kind;

typedef struct {
    const char *text;
    uint32_t value;
} ember_choice;

typedef struct {
    const char *name;
    ember_opt_kind kind;
    void *target;
    const ember_choice *choices; /* OPT_CHOICE only, ended by a NULL text */
} ember_option;

static const ember_choice EMBER_METRICS[] = {
    {"euclidean", EMBER_METRIC_EUCLIDEAN}, {"cosine", EMBER_METRIC_COSINE}, {NULL, 0}};
static const ember_choice EMBER_KNNS[] = {
    {"auto", EMBER_KNN_AUTO}, {"exact", EMBER_KNN_EXACT}, {"approx", EMBER_KNN_APPROX}, {NULL, 0}};

/* The MATLAB-style error identifier of a status. */
static const char *ember_mex_id(ember_status st) {
    switch (st) {
    case EMBER_ERR_NULL_POINTER: return "ember:nullPointer";
    case EMBER_ERR_NON_FINITE: return "ember:nonFinite";
    case EMBER_ERR_SHAPE: return "ember:shape";
    case EMBER_ERR_INVALID_PARAMETER: return "ember:invalidParameter";
    case EMBER_ERR_PERPLEXITY_TOO_LARGE: return "ember:perplexityTooLarge";
    case EMBER_ERR_TOO_FEW_POINTS: return "ember:tooFewPoints";
    case EMBER_CANCELLED: return "ember:cancelled";
    case EMBER_ERR_ALLOCATION: return "ember:outOfMemory";
    case EMBER_ERR_STRUCT_SIZE: return "ember:structSize";
    case EMBER_ERR_ZERO_VECTOR: return "ember:zeroVector";
    case EMBER_ERR_BAD_MODEL: return "ember:badModel";
    case EMBER_ERR_IO: return "ember:io";
    case EMBER_ERR_SCALE: return "ember:scale";
    default: return "ember:internal";
    }
}

/* Raises a MATLAB error for a failed ember call; returns on success. */
static void ember_mex_check(const char *fn, ember_status st) {
    if (st == EMBER_OK) return;
    mexErrMsgIdAndTxt(ember_mex_id(st), "%s: %s", fn, ember_last_error_message());
}

static void ember_mex_warn(const char *fn) {
    const char *w = ember_last_warning_message();
    if (w && w[0]) mexWarnMsgIdAndTxt("ember:warning", "%s: %s", fn, w);
}

/* X as single-precision, N x D, column-major (MATLAB's layout, rows are observations).
 * single input is used in place; double input is converted into an mxMalloc copy. */
static const float *ember_mex_matrix(const char *fn, const mxArray *a, size_t *n, size_t *d) {
    if (!(mxIsSingle(a) || mxIsDouble(a)) || mxIsComplex(a) || mxIsSparse(a) ||
        mxGetNumberOfDimensions(a) != 2)
        mexErrMsgIdAndTxt("ember:badInput", "%s: X must be a real, full, 2-D single or double matrix (rows are observations)", fn);
    *n = mxGetM(a);
    *d = mxGetN(a);
    if (*n == 0 || *d == 0)
        mexErrMsgIdAndTxt("ember:shape", "%s: X is empty (%zu x %zu)", fn, *n, *d);
    if (mxIsSingle(a)) return (const float *)mxGetData(a);
    const double *src = (const double *)mxGetData(a);
    size_t len = *n * *d;
    float *copy = (float *)mxMalloc(len * sizeof(float));
    for (size_t i = 0; i < len; i++) copy[i] = (float)src[i];
    return copy;
}

/* An N x dims (x panels) result in the input's class, from ember's row-major panels. */
static mxArray *ember_mex_result(const float *y, size_t n, size_t dims, size_t panels, int single) {
    mwSize shape[3] = {(mwSize)n, (mwSize)dims, (mwSize)panels};
    mxArray *out = mxCreateNumericArray(panels > 1 ? 3 : 2, shape, single ? mxSINGLE_CLASS : mxDOUBLE_CLASS, mxREAL);
    for (size_t p = 0; p < panels; p++)
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < dims; j++) {
                size_t to = p * n * dims + j * n + i;
                float v = y[p * n * dims + i * dims + j];
                if (single) ((float *)mxGetData(out))[to] = v;
                else ((double *)mxGetData(out))[to] = (double)v;
            }
    return out;
}

static double ember_mex_scalar(const char *fn, const char *name, const mxArray *v) {
    if (!(mxIsNumeric(v) || mxIsLogical(v)) || mxIsComplex(v) || mxGetNumberOfElements(v) != 1)
        mexErrMsgIdAndTxt("ember:badOption", "%s: option '%s' must be a real scalar", fn, name);
    double x = mxGetScalar(v);
    if (!isfinite(x)) mexErrMsgIdAndTxt("ember:badOption", "%s: option '%s' must be finite", fn, name);
    return x;
}

static double ember_mex_integer(const char *fn, const char *name, const mxArray *v, double lo, double hi) {
    double x = ember_mex_scalar(fn, name, v);
    if (x != floor(x) || x < lo || x > hi)
        mexErrMsgIdAndTxt("ember:badOption", "%s: option '%s' must be an integer in [%.0f, %.0f], got %g", fn, name, lo, hi, x);
    return x;
}

static void ember_mex_choice(const char *fn, const ember_option *o, const mxArray *v) {
    char text[32];
    if (!mxIsChar(v) || mxGetString(v, text, sizeof text) != 0)
        mexErrMsgIdAndTxt("ember:badOption", "%s: option '%s' must be a short string", fn, o->name);
    for (const ember_choice *c = o->choices; c->text; c++)
        if (strcmp(c->text, text) == 0) { *(uint32_t *)o->target = c->value; return; }
    char known[200] = "";
    for (const ember_choice *c = o->choices; c->text; c++) {
        strncat(known, c->text, sizeof known - strlen(known) - 1);
        if (c[1].text) strncat(known, ", ", sizeof known - strlen(known) - 1);
    }
    mexErrMsgIdAndTxt("ember:badOption", "%s: option '%s' = '%s' is not one of: %s", fn, o->name, text, known);
}

/* Reads the fields of `opts` (a 1x1 struct, or [] for none) into the table's targets.
 * A field the table does not know is an error that lists the known ones. */
static void ember_mex_options(const char *fn, const mxArray *opts, const ember_option *table) {
    if (opts == NULL || mxIsEmpty(opts)) return;
    if (!mxIsStruct(opts) || mxGetNumberOfElements(opts) != 1)
        mexErrMsgIdAndTxt("ember:badOption", "%s: opts must be a scalar struct", fn);
    int fields = mxGetNumberOfFields(opts);
    for (int f = 0; f < fields; f++) {
        const char *name = mxGetFieldNameByNumber(opts, f);
        const mxArray *v = mxGetFieldByNumber(opts, 0, f);
        const ember_option *o = table;
        while (o->name && strcmp(o->name, name) != 0) o++;
        if (!o->name) {
            char known[600] = "";
            for (const ember_option *k = table; k->name; k++) {
                strncat(known, k->name, sizeof known - strlen(known) - 1);
                if (k[1].name) strncat(known, ", ", sizeof known - strlen(known) - 1);
            }
            mexErrMsgIdAndTxt("ember:unknownOption", "%s: unknown option '%s'; known: %s", fn, name, known);
        }
        if (!v) continue;
        switch (o->kind) {
        case OPT_U32: *(uint32_t *)o->target = (uint32_t)ember_mex_integer(fn, name, v, 0, 4294967295.0); break;
        case OPT_I32: *(int32_t *)o->target = (int32_t)ember_mex_integer(fn, name, v, -1, 2147483647.0); break;
        case OPT_U64: *(uint64_t *)o->target = (uint64_t)ember_mex_integer(fn, name, v, 0, 9007199254740992.0); break;
        case OPT_F32: *(float *)o->target = (float)ember_mex_scalar(fn, name, v); break;
        case OPT_F64: *(double *)o->target = ember_mex_scalar(fn, name, v); break;
        case OPT_BOOL: *(int *)o->target = ember_mex_scalar(fn, name, v) != 0; break;
        case OPT_CHOICE: ember_mex_choice(fn, o, v); break;
        }
    }
}

static const char *ember_mex_stage(uint32_t stage) {
    switch (stage) {
    case EMBER_STAGE_KNN: return "neighbours";
    case EMBER_STAGE_AFFINITIES: return "affinities";
    case EMBER_STAGE_INIT: return "initialisation";
    default: return "optimisation";
    }
}

/* Progress for opts.verbose: one line per stage and a loss line when the core reports one. */
static int ember_mex_progress(void *user, uint32_t stage, size_t done, size_t total, double loss) {
    const char *fn = (const char *)user;
    if (done == 0) mexPrintf("%s: %s\n", fn, ember_mex_stage(stage));
    else if (!isnan(loss)) mexPrintf("%s: %s %zu/%zu, loss %.4f\n", fn, ember_mex_stage(stage), done, total, loss);
    return 0;
}

static void ember_mex_arity(const char *fn, int nrhs, int lo, int hi, int nlhs, int out_hi, const char *usage) {
    if (nrhs < lo || nrhs > hi || nlhs > out_hi)
        mexErrMsgIdAndTxt("ember:usage", "%s: usage: %s", fn, usage);
}

#endif
