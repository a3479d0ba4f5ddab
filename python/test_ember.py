"""Test of the ctypes binding on real data: run by tests/tests/python.rs (python3, stdlib
only; numpy is used when present). Usage: python3 test_ember.py IMAGES.idx LABELS.idx"""
import math
import sys

import ember

images, labels = sys.argv[1], sys.argv[2]
n = 1000
raw = open(images, "rb").read()
lab = open(labels, "rb").read()[8:8 + n]
x = [[float(v) for v in raw[16 + i * 784:16 + (i + 1) * 784]] for i in range(n)]


def accuracy(y):
    """Leave-one-out 10-NN accuracy of a 2-D embedding."""
    rows = [list(map(float, r)) for r in y]
    correct = 0
    for i, (a, b) in enumerate(rows):
        d = sorted(((a - c) ** 2 + (b - e) ** 2, j) for j, (c, e) in enumerate(rows) if j != i)[:10]
        votes = [0] * 10
        for _, j in d:
            votes[lab[j]] += 1
        correct += votes.index(max(votes)) == lab[i]
    return correct / len(rows)


y = ember.tsne(x, perplexity=20.0, threads=2)
acc = accuracy(y)
print(f"ember {ember.version()}: t-SNE of {n} digits through ctypes, 10-NN accuracy {acc:.3f}")
assert len(y) == n and all(math.isfinite(float(v)) for r in y for v in r)
assert acc > 0.75, acc
u = ember.umap(x, threads=2)
acc_u = accuracy(u)
print(f"UMAP 10-NN accuracy {acc_u:.3f}")
assert acc_u > 0.75, acc_u
panels = ember.ne_spectrum(x, [0.0, 1.0], threads=2)
assert len(panels) == 2 and len(panels[0]) == n
idx, dist = ember.knn(x, 10, method="exact")
assert all(int(idx[i][0]) != i for i in range(n)), "a point listed as its own neighbour"
assert all(float(dist[i][0]) <= float(dist[i][9]) for i in range(n)), "distances not ascending"
truth = math.sqrt(sum((a - b) ** 2 for a, b in zip(x[3], x[int(idx[3][9])])))
assert abs(float(dist[3][9]) - truth) <= 1e-3 * truth, (dist[3][9], truth)
acc_lib = ember.knn_accuracy(y, list(lab), k=10, test_fraction=0.2)
print(f"library 10-NN accuracy of the t-SNE map {acc_lib:.3f}")
assert acc_lib > 0.7, acc_lib
loss, grad = ember.infonce(x[:64], tau=0.5)
assert math.isfinite(loss) and len(grad) == 64
try:
    ember.tsne(x[:10], perplexity=50.0)
    raise SystemExit("a perplexity above N - 1 was accepted")
except ember.EmberError as e:
    assert "perplexity" in str(e), e
model = ember.Model.fit(x[:800], "tsne", perplexity=20.0, threads=2)
assert model.info() == ("tsne", 800, 784, 2), model.info()
placed = model.transform(x[800:], threads=2)
one = model.transform(x[800:801], threads=1)
assert [float(v) for v in one[0]] == [float(v) for v in placed[0]], "a point alone differs"
import pickle
again = pickle.loads(pickle.dumps(model)).transform(x[800:], threads=1)
assert [[float(v) for v in r] for r in again] == [[float(v) for v in r] for r in placed]
ref = [list(map(float, r)) for r in model.embedding]
hits = 0
for i, (a, b) in enumerate(placed):
    near = sorted(((a - c) ** 2 + (b - e) ** 2, j) for j, (c, e) in enumerate(ref))[:10]
    votes = [0] * 10
    for _, j in near:
        votes[lab[j]] += 1
    hits += votes.index(max(votes)) == lab[800 + i]
print(f"placed {n - 800} digits into the fitted map: 10-NN accuracy {hits / (n - 800):.3f}")
assert hits / (n - 800) > 0.7
model.close()
model.close()
print("python binding: all checks passed")
