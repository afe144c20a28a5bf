"""Near duplicates: normalised text, fingerprints, MinHash LSH blocking and rapidfuzz scoring with guards."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from itertools import combinations

from datasketch import MinHash, MinHashLSH
from rapidfuzz import fuzz

from dreaming.policy import Policy

_CONTRACTIONS = re.compile(r"\b(do|does|did|can|should|would|is|are|was|were|must|have|has)n[’']?t\b")
_TOKEN = re.compile(r"[a-z0-9][a-z0-9_./:+=@#-]*")
_NEG = {"never", "not", "no", "avoid", "without", "stop", "nothing", "none", "cannot", "neither", "nor"}
_ANTONYMS = {"enable": "ENABLE", "enabled": "ENABLE", "disable": "DISABLE", "disabled": "DISABLE",
             "allow": "ALLOW", "allowed": "ALLOW", "deny": "DENY", "denied": "DENY", "forbid": "DENY",
             "true": "TRUE", "false": "FALSE", "include": "INCLUDE", "exclude": "EXCLUDE",
             "before": "BEFORE", "after": "AFTER", "increase": "UP", "decrease": "DOWN"}
_STOP = {"a", "an", "the", "to", "for", "of", "in", "on", "at", "by", "and", "or", "is", "are", "be", "it", "this",
         "that", "with", "use", "uses", "using", "always", "please", "should", "must", "when", "you", "we", "i",
         "our", "your", "all", "any", "as", "from", "into", "do", "does", "so", "then", "than", "its"}


def norm_text(text: str) -> str:
    """Lowercase, NFKC, contractions expanded, markup and punctuation dropped, spaces collapsed."""
    t = unicodedata.normalize("NFKC", text).lower()
    t = _CONTRACTIONS.sub(lambda m: m.group(1) + " not", t)
    return " ".join(tok.rstrip(".:/-") for tok in _TOKEN.findall(t) if tok.rstrip(".:/-"))


def _stem(tok: str) -> str:
    for suf in ("ing", "ed", "es", "s"):
        if len(tok) > len(suf) + 3 and tok.endswith(suf):
            return tok[: -len(suf)]
    return tok


class _Fp:
    """What the near-duplicate test compares: normalised text, literals, polarity, content stems."""

    __slots__ = ("norm", "literals", "polarity", "stems")

    def __init__(self, text: str):
        self.norm = norm_text(text)
        toks = self.norm.split()
        self.literals = frozenset(t for t in toks if any(c.isdigit() for c in t) or "/" in t or "=" in t)
        self.polarity = (any(t in _NEG for t in toks), frozenset(_ANTONYMS[t] for t in toks if t in _ANTONYMS))
        self.stems = frozenset(_stem(t) for t in toks if t not in _STOP and t not in _NEG and t not in _ANTONYMS)


def near_duplicate(a: _Fp, b: _Fp, policy: Policy) -> float | None:
    """The similarity score when ``a`` and ``b`` say the same thing, else None.

    Guards first (any difference is a different statement): the numbers/paths/ids they mention,
    their negation and antonym words, and content words that differ on both sides (unless those
    are typos of each other). Then rapidfuzz token_set_ratio and token_sort_ratio thresholds.
    """
    if a.norm == b.norm:
        return 1.0
    if a.literals != b.literals or a.polarity != b.polarity:
        return None
    ua, ub = a.stems - b.stems, b.stems - a.stems
    if ua and ub:
        for xs, ys in ((ua, ub), (ub, ua)):
            if not all(any(fuzz.ratio(x, y) >= 80 for y in ys) for x in xs):
                return None
    score = fuzz.token_set_ratio(a.norm, b.norm) / 100
    if score < policy.near_duplicate_ratio or fuzz.token_sort_ratio(a.norm, b.norm) / 100 < policy.near_duplicate_sort_ratio:
        return None
    return round(score, 4)


def _minhashes(fps: list[_Fp], policy: Policy) -> list[MinHash]:
    return MinHash.bulk([[s.encode("utf-8") for s in sorted(fp.stems | fp.literals)] or [b"\x00"] for fp in fps],
                        num_perm=policy.lsh_num_perm, seed=1)


def cluster_duplicates(texts: list[str], policy: Policy, blockers: list[str | None] | None = None):
    """Groups of indexes of ``texts`` that are exact or near duplicates, with the best pair score.

    Candidate pairs come from exact normalised-text buckets and MinHash LSH buckets (no all-pairs
    comparison); ``blockers`` (e.g. memory keys) keep items with different non-null values apart.
    Returns ``[(sorted indexes, min score), ...]`` for groups of two or more, in index order.
    """
    n = len(texts)
    fps = [_Fp(t) for t in texts]
    blockers = blockers or [None] * n
    pairs: set[tuple[int, int]] = set()
    # exact blocking on what the guards require to be equal (literals, polarity), then exact-text
    # buckets and MinHash LSH inside each block: never an all-pairs comparison over the store
    blocks: dict[tuple, list[int]] = defaultdict(list)
    for i, fp in enumerate(fps):
        blocks[(fp.literals, fp.polarity)].append(i)
    for block in blocks.values():
        if len(block) < 2:
            continue
        by_norm: dict[str, list[int]] = defaultdict(list)
        for i in block:
            by_norm[fps[i].norm].append(i)
        for group in by_norm.values():  # identical texts: link each to the first with a compatible blocker
            firsts: dict[str | None, int] = {}
            for i in group:
                j = firsts.setdefault(blockers[i], i) if blockers[i] else group[0]
                if j != i:
                    pairs.add((j, i))
        reps = [g[0] for g in by_norm.values()]  # one representative per distinct text
        if len(reps) < 2:
            continue
        if len(reps) <= 16:
            pairs.update(combinations(sorted(reps), 2))
            continue
        lsh = MinHashLSH(threshold=policy.lsh_threshold, num_perm=policy.lsh_num_perm)
        for i, mh in zip(reps, _minhashes([fps[i] for i in reps], policy), strict=True):
            for j in lsh.query(mh):
                pairs.add((min(i, j), max(i, j)))
            lsh.insert(i, mh)
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    scores: dict[int, float] = {}
    for i, j in sorted(pairs):
        if blockers[i] and blockers[j] and blockers[i] != blockers[j]:
            continue
        s = near_duplicate(fps[i], fps[j], policy)
        if s is None:
            continue
        ri, rj = find(i), find(j)
        root = min(ri, rj)
        parent[max(ri, rj)] = root
        scores[root] = min(scores.get(ri, 1.0), scores.get(rj, 1.0), s)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        groups[find(i)].append(i)
    return [(g, scores.get(root, 1.0)) for root, g in sorted(groups.items()) if len(g) > 1]


# --- helpers ------------------------------------------------------------------------------------
