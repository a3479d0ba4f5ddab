/* Y = ember_ne(X, opts): a contrastive neighbour embedding of the rows of X (single or
 * double, N x D). With a vector opts.s, one panel per value from one kNN graph:
 * Y is N x dims x numel(s) (the t-SNE <-> UMAP spectrum); otherwise N x dims.
 * opts fields (all optional): dims, neighbors, loss ('neg'|'nce'|'infonce'|'umap'),
 * graph ('fuzzy'|'binary'), negatives, s, zbar, epochs, early_epochs (-1 = auto),
 * learning_rate, min_dist, spread, metric, knn, init ('pca'|'spectral'|'random'),
 * threads, seed, verbose. */
#include "ember_mex.h"

void mexFunction(int nlhs, mxArray *plhs[], int nrhs, const mxArray *prhs[]) {
    static const char fn[] = "ember_ne";
    ember_mex_arity(fn, nrhs, 1, 2, nlhs, 1, "Y = ember_ne(X, opts)");
    static const ember_choice losses[] = {{"neg", EMBER_LOSS_NEG},
                                          {"nce", EMBER_LOSS_NCE},
                                          {"infonce", EMBER_LOSS_INFONCE},
                                          {"umap", EMBER_LOSS_UMAP},
                                          {NULL, 0}};
    static const ember_choice graphs[] = {{"fuzzy", EMBER_GRAPH_FUZZY}, {"binary", EMBER_GRAPH_BINARY}, {NULL, 0}};
    static const ember_choice inits[] = {
        {"pca", EMBER_INIT_PCA}, {"spectral", EMBER_INIT_SPECTRAL}, {"random", EMBER_INIT_RANDOM}, {NULL, 0}};
    ember_ne_params p = ember_ne_params_default();
    int verbose = 0;
    double unused_s = 0;
    const ember_option table[] = {
        {"dims", OPT_U32, &p.dims, NULL},
        {"neighbors", OPT_U32, &p.neighbors, NULL},
        {"loss", OPT_CHOICE, &p.loss, losses},
        {"graph", OPT_CHOICE, &p.graph, graphs},
        {"negatives", OPT_U32, &p.negatives, NULL},
        {"s", OPT_F64, &unused_s, NULL}, /* read below: it may be a vector */
        {"zbar", OPT_F64, &p.zbar, NULL},
        {"epochs", OPT_U32, &p.epochs, NULL},
        {"early_epochs", OPT_I32, &p.early_epochs, NULL},
        {"learning_rate", OPT_F32, &p.learning_rate, NULL},
        {"min_dist", OPT_F32, &p.min_dist, NULL},
        {"spread", OPT_F32, &p.spread, NULL},
        {"metric", OPT_CHOICE, &p.metric, EMBER_METRICS},
        {"knn", OPT_CHOICE, &p.knn, EMBER_KNNS},
        {"init", OPT_CHOICE, &p.init, inits},
        {"threads", OPT_U32, &p.threads, NULL},
        {"seed", OPT_U64, &p.seed, NULL},
        {"verbose", OPT_BOOL, &verbose, NULL},
        {NULL, OPT_U32, NULL, NULL}};
    /* s may be a vector; the option table reads scalars, so take it out first. */
    const mxArray *opts = nrhs > 1 ? prhs[1] : NULL;
    const mxArray *s = NULL;
    mxArray *rest = NULL;
    if (opts && mxIsStruct(opts) && mxGetNumberOfElements(opts) == 1 && mxGetFieldNumber(opts, "s") >= 0) {
        s = mxGetField(opts, 0, "s");
        rest = mxDuplicateArray(opts);
        mxRemoveField(rest, mxGetFieldNumber(rest, "s"));
        opts = rest;
    }
    ember_mex_options(fn, opts, table);
    if (rest) mxDestroyArray(rest);
    size_t count = 1;
    double *s_values = &p.s;
    if (s) {
        if (!mxIsDouble(s) || mxIsComplex(s) || mxIsEmpty(s))
            mexErrMsgIdAndTxt("ember:badOption", "%s: option 's' must be a real double scalar or vector", fn);
        count = mxGetNumberOfElements(s);
        s_values = (double *)mxGetData(s);
        p.s = s_values[0];
    }
    size_t n, d;
    const float *x = ember_mex_matrix(fn, prhs[0], &n, &d);
    float *y = (float *)mxMalloc(count * n * (p.dims ? p.dims : 1) * sizeof(float));
    ember_progress_fn progress = verbose ? ember_mex_progress : NULL;
    ember_status st = count > 1 ? ember_ne_spectrum(x, n, d, 1, n, &p, s_values, count, y, progress, (void *)fn)
                                : ember_ne(x, n, d, 1, n, &p, y, progress, (void *)fn);
    ember_mex_check(fn, st);
    ember_mex_warn(fn);
    plhs[0] = ember_mex_result(y, n, p.dims, count, mxIsSingle(prhs[0]));
    mxFree(y);
}
