"""
    Ember

Julia bindings of the ember C library (`libember`), by `ccall` alone. Matrices are taken as
Julia stores them: a `D×N` matrix holds N points as columns (the Julia convention) and
`tsne(X)` etc. embed its columns; pass `points = :rows` for an `N×D` matrix (the MATLAB
layout). No copies: the column-major layout is described to the library by strides.

    using .Ember
    Y = Ember.tsne(X)                 # X :: Matrix{Float32}, D×N → Y :: Matrix{Float32}, 2×N
    Y = Ember.umap(X; neighbors = 15)
    Ys = Ember.ne_spectrum(X, [0.0, 0.5, 1.0])
    loss, G = Ember.infonce(Z; tau = 0.1f0)
    idx, dist = Ember.knn(X, 15)      # 15×N, 1-based
    ix = Ember.KnnIndex(X); idx, dist = Ember.query(ix, Q, 10)

The library is `ENV["EMBER_LIB"]`, or `libember` on the loader path.
"""
module Ember

const libember = get(ENV, "EMBER_LIB", "libember")

struct EmberError <: Exception
    status::Int32
    message::String
end
Base.showerror(io::IO, e::EmberError) = print(io, "ember: ", e.message)

# Parameter structs: field for field the structs of include/ember.h.
mutable struct TransformParams
    struct_size::UInt32
    perplexity::Float32
    neighbors::UInt32
    iters::UInt32
    learning_rate::Float32
    exaggeration::Float32
    threads::UInt32
end

mutable struct TsneParams
    struct_size::UInt32
    dims::UInt32
    perplexity::Float32
    early_iters::UInt32
    iters::UInt32
    exaggeration::Float32
    learning_rate::Float32
    momentum::Float32
    dof::Float32
    theta::Float32
    metric::UInt32
    repulsion::UInt32
    init::UInt32
    threads::UInt32
    knn::UInt32
    pca::UInt32
    seed::UInt64
end

mutable struct UmapParams
    struct_size::UInt32
    dims::UInt32
    neighbors::UInt32
    min_dist::Float32
    spread::Float32
    epochs::UInt32
    negatives::UInt32
    learning_rate::Float32
    metric::UInt32
    knn::UInt32
    init::UInt32
    threads::UInt32
    seed::UInt64
end

mutable struct NeParams
    struct_size::UInt32
    dims::UInt32
    neighbors::UInt32
    loss::UInt32
    graph::UInt32
    negatives::UInt32
    s::Float64
    zbar::Float64
    epochs::UInt32
    early_epochs::Int32
    learning_rate::Float32
    min_dist::Float32
    spread::Float32
    metric::UInt32
    knn::UInt32
    init::UInt32
    threads::UInt32
    seed::UInt64
end

struct Similarity
    kind::UInt32
    param::Float32
end

const LOSSES = Dict(:neg => 0x0, :nce => 0x1, :infonce => 0x2, :umap => 0x3)
const METRICS = Dict(:euclidean => 0x0, :cosine => 0x1)
const KNN_METHODS = Dict(:auto => 0x0, :exact => 0x1, :approx => 0x2)

version() = unsafe_string(ccall((:ember_version, libember), Cstring, ()))

function check(status::Int32)
    status == 0 && return nothing
    detail = unsafe_string(ccall((:ember_last_error_message, libember), Cstring, ()))
    throw(EmberError(status, detail))
end

tsne_defaults() = ccall((:ember_tsne_params_default, libember), TsneParams, ())
umap_defaults() = ccall((:ember_umap_params_default, libember), UmapParams, ())
ne_defaults() = ccall((:ember_ne_params_default, libember), NeParams, ())

# (n, d, row_stride, col_stride) of a column-major matrix holding points as columns or rows.
function layout(X::AbstractMatrix{Float32}, points::Symbol)
    stride(X, 1) == 1 || throw(ArgumentError("X must be column-major (a Matrix or a contiguous view)"))
    r, c = size(X)
    points === :columns ? (c, r, stride(X, 2), 1) : (r, c, 1, stride(X, 2))
end

function tsne(X::AbstractMatrix{Float32}; points::Symbol = :columns, dims::Integer = 2,
              perplexity::Real = 30, seed::Integer = 42, threads::Integer = 0)
    n, d, rs, cs = layout(X, points)
    p = tsne_defaults()
    p.dims, p.perplexity, p.seed, p.threads = dims, perplexity, seed, threads
    Y = Matrix{Float32}(undef, dims, n)
    check(ccall((:ember_tsne, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, Ref{TsneParams}, Ptr{Float32},
                 Ptr{Cvoid}, Ptr{Cvoid}),
                X, n, d, rs, cs, p, Y, C_NULL, C_NULL))
    Y
end

function umap(X::AbstractMatrix{Float32}; points::Symbol = :columns, dims::Integer = 2,
              neighbors::Integer = 15, min_dist::Real = 0.1, seed::Integer = 42,
              threads::Integer = 0)
    n, d, rs, cs = layout(X, points)
    p = umap_defaults()
    p.dims, p.neighbors, p.min_dist, p.seed, p.threads = dims, neighbors, min_dist, seed, threads
    Y = Matrix{Float32}(undef, dims, n)
    check(ccall((:ember_umap, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, Ref{UmapParams}, Ptr{Float32},
                 Ptr{Cvoid}, Ptr{Cvoid}),
                X, n, d, rs, cs, p, Y, C_NULL, C_NULL))
    Y
end

function ne(X::AbstractMatrix{Float32}; points::Symbol = :columns, loss::Symbol = :neg,
            s::Real = 0, dims::Integer = 2, seed::Integer = 42, threads::Integer = 0)
    n, d, rs, cs = layout(X, points)
    p = ne_defaults()
    p.loss, p.s, p.dims, p.seed, p.threads = LOSSES[loss], s, dims, seed, threads
    Y = Matrix{Float32}(undef, dims, n)
    check(ccall((:ember_ne, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, Ref{NeParams}, Ptr{Float32},
                 Ptr{Cvoid}, Ptr{Cvoid}),
                X, n, d, rs, cs, p, Y, C_NULL, C_NULL))
    Y
end

function ne_spectrum(X::AbstractMatrix{Float32}, s::Vector{Float64}; points::Symbol = :columns,
                     loss::Symbol = :neg, dims::Integer = 2, seed::Integer = 42,
                     threads::Integer = 0)
    n, d, rs, cs = layout(X, points)
    p = ne_defaults()
    p.loss, p.dims, p.seed, p.threads = LOSSES[loss], dims, seed, threads
    Y = Array{Float32}(undef, dims, n, length(s))
    check(ccall((:ember_ne_spectrum, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, Ref{NeParams}, Ptr{Float64},
                 Csize_t, Ptr{Float32}, Ptr{Cvoid}, Ptr{Cvoid}),
                X, n, d, rs, cs, p, s, length(s), Y, C_NULL, C_NULL))
    [Y[:, :, k] for k in 1:length(s)]
end

"""InfoNCE / NT-Xent over the columns of `Z` (views 2k−1 and 2k are positives)."""
function infonce(Z::Matrix{Float32}; tau::Real = 0.1, threads::Integer = 0)
    d, n = size(Z)
    G = similar(Z)
    loss = Ref{Float64}(0)
    check(ccall((:ember_infonce, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Similarity, UInt32, Ptr{Float64},
                 Ptr{Float32}),
                Z, n, d, d, Similarity(0, tau), threads, loss, G))
    loss[], G
end

"""
    idx, dist = knn(X, k)

The `k` nearest neighbours of every point among the others (never itself), ascending:
`k×N` matrices of 1-based point numbers and distances (Euclidean, or 1 − cosine).
"""
function knn(X::AbstractMatrix{Float32}, k::Integer; points::Symbol = :columns,
             metric::Symbol = :euclidean, method::Symbol = :auto, threads::Integer = 0,
             seed::Integer = 42)
    n, d, rs, cs = layout(X, points)
    idx = Matrix{UInt32}(undef, k, n)
    dist = Matrix{Float32}(undef, k, n)
    check(ccall((:ember_knn, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, Csize_t, UInt32, UInt32, UInt32,
                 UInt64, Ptr{UInt32}, Ptr{Float32}, Ptr{Cvoid}, Ptr{Cvoid}),
                X, n, d, rs, cs, k, METRICS[metric], KNN_METHODS[method], threads, seed, idx, dist,
                C_NULL, C_NULL))
    Int.(idx) .+ 1, dist
end

"""A reference set for repeated exact neighbour queries; freed by the GC or `close`."""
mutable struct KnnIndex
    ptr::Ptr{Cvoid}
end

function KnnIndex(X::AbstractMatrix{Float32}; points::Symbol = :columns,
                  metric::Symbol = :euclidean)
    n, d, rs, cs = layout(X, points)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:ember_knn_index_new, libember), Int32,
                (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, UInt32, Ref{Ptr{Cvoid}}),
                X, n, d, rs, cs, METRICS[metric], out))
    finalizer(close, KnnIndex(out[]))
end

function Base.close(ix::KnnIndex)
    handle = Ref(ix.ptr)
    ccall((:ember_knn_index_free, libember), Cvoid, (Ref{Ptr{Cvoid}},), handle)
    ix.ptr = C_NULL
    nothing
end

"""`k×M` 1-based reference numbers and distances of the nearest reference points of Q's points."""
function query(ix::KnnIndex, Q::AbstractMatrix{Float32}, k::Integer; points::Symbol = :columns,
               threads::Integer = 0)
    nq, _, rs, cs = layout(Q, points)
    idx = Matrix{UInt32}(undef, k, nq)
    dist = Matrix{Float32}(undef, k, nq)
    check(ccall((:ember_knn_index_query, libember), Int32,
                (Ptr{Cvoid}, Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, UInt32, Ptr{UInt32},
                 Ptr{Float32}),
                ix.ptr, Q, nq, rs, cs, k, threads, idx, dist))
    Int.(idx) .+ 1, dist
end

"""
    model = Ember.Model(X, :tsne)     # or :umap; points as columns unless points = :rows
    Ember.embedding(model)            # the fit's map, dims×N
    Ember.transform(model, Xnew)      # place new points; the map does not move
    Ember.save(model, "map.ember"); model = Ember.load_model("map.ember")

A fitted model, freed by the GC or `close`. Many tasks may transform through one model.
"""
mutable struct Model
    ptr::Ptr{Cvoid}
end

const METHODS = Dict(:tsne => 0x1, :umap => 0x2)

function Model(X::AbstractMatrix{Float32}, method::Symbol = :tsne; points::Symbol = :columns,
               seed::Integer = 42, threads::Integer = 0)
    n, d, rs, cs = layout(X, points)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    if method === :tsne
        p = tsne_defaults()
        p.seed, p.threads = seed, threads
        check(ccall((:ember_model_fit, libember), Int32,
                    (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, UInt32, Ref{TsneParams},
                     Ptr{Cvoid}, Ptr{Cvoid}, Ref{Ptr{Cvoid}}),
                    X, n, d, rs, cs, METHODS[method], p, C_NULL, C_NULL, out))
    else
        p = umap_defaults()
        p.seed, p.threads = seed, threads
        check(ccall((:ember_model_fit, libember), Int32,
                    (Ptr{Float32}, Csize_t, Csize_t, Csize_t, Csize_t, UInt32, Ref{UmapParams},
                     Ptr{Cvoid}, Ptr{Cvoid}, Ref{Ptr{Cvoid}}),
                    X, n, d, rs, cs, METHODS[method], p, C_NULL, C_NULL, out))
    end
    finalizer(close, Model(out[]))
end

function Base.close(m::Model)
    handle = Ref(m.ptr)
    ccall((:ember_model_free, libember), Cvoid, (Ref{Ptr{Cvoid}},), handle)
    m.ptr = C_NULL
    nothing
end

function load_model(path::AbstractString)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    check(ccall((:ember_model_load, libember), Int32, (Cstring, Ref{Ptr{Cvoid}}), path, out))
    finalizer(close, Model(out[]))
end

save(m::Model, path::AbstractString) =
    check(ccall((:ember_model_save, libember), Int32, (Ptr{Cvoid}, Cstring), m.ptr, path))

"""(reference points, input columns, output dimensions) of a model."""
function info(m::Model)
    method, n, d, dims = Ref{UInt32}(0), Ref{Csize_t}(0), Ref{Csize_t}(0), Ref{Csize_t}(0)
    check(ccall((:ember_model_info, libember), Int32,
                (Ptr{Cvoid}, Ptr{UInt32}, Ptr{Csize_t}, Ptr{Csize_t}, Ptr{Csize_t}),
                m.ptr, method, n, d, dims))
    Int(n[]), Int(d[]), Int(dims[])
end

function embedding(m::Model)
    n, _, dims = info(m)
    Y = Matrix{Float32}(undef, dims, n)
    check(ccall((:ember_model_embedding, libember), Int32, (Ptr{Cvoid}, Ptr{Float32}), m.ptr, Y))
    Y
end

function transform(m::Model, X::AbstractMatrix{Float32}; points::Symbol = :columns,
                   threads::Integer = 0)
    nq, _, rs, cs = layout(X, points)
    _, _, dims = info(m)
    p = ccall((:ember_transform_params_default, libember), TransformParams, ())
    p.threads = threads
    Y = Matrix{Float32}(undef, dims, nq)
    check(ccall((:ember_model_transform, libember), Int32,
                (Ptr{Cvoid}, Ptr{Float32}, Csize_t, Csize_t, Csize_t, Ref{TransformParams},
                 Ptr{Float32}, Ptr{Cvoid}, Ptr{Cvoid}),
                m.ptr, X, nq, rs, cs, p, Y, C_NULL, C_NULL))
    Y
end

end # module
