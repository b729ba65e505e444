"""Chinese ROUGE/BLEU against values worked out by hand (fractions below) and against rouge-score/sacrebleu."""

from __future__ import annotations

import math
import random
from fractions import Fraction as F

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from soaes_bench.metrics import chinese as m


def f1(p: F, r: F) -> float:
    return 100 * float(2 * p * r / (p + r)) if p + r else 0.0


# ---------------------------------------------------------------- tokenisation

def test_jieba_words_of_hand_example():
    assert m.tokenize_words("我爱北京天安门") == ["我", "爱", "北京", "天安门"]
    assert m.tokenize_words("我爱北京") == ["我", "爱", "北京"]


def test_punctuation_and_whitespace_tokens_dropped_symbols_kept():
    assert m.tokenize_words("我爱北京！！") == ["我", "爱", "北京"]
    assert m.tokenize_words("“好”……，。 ") == ["好"]
    assert m.tokenize_words("GDP增长3.5%") == ["gdp", "增长", "3.5%"]  # lower-cased; mixed token kept
    assert m.tokenize_words("Hello World, 2024年") == ["hello", "world", "2024", "年"]
    assert m.tokenize_words("a + b") == ["a", "+", "b"]  # '+' is a math symbol (Sm), not punctuation
    assert m.tokenize_words("，。！？、；：") == []


def test_char_tokens_keep_ascii_runs():
    assert m.tokenize_chars("国有资产，监督。") == ["国", "有", "资", "产", "监", "督"]
    assert m.tokenize_chars("GDP增长 3.5%！") == ["gdp", "增", "长", "3", "5"]
    assert m.tokenize_chars("2023年") == ["2023", "年"]


def test_tokenizers_return_fresh_lists():
    a = m.tokenize_words("国有资产流失")
    a.append("x")
    assert m.tokenize_words("国有资产流失") == ["国有资产", "流失"]


# ---------------------------------------------------------------- ROUGE by hand

def test_rouge_word_level_hand_example():
    # pred 我/爱/北京/天安门 (4 tokens), ref 我/爱/北京 (3 tokens)
    # unigrams: overlap 3 -> P = 3/4, R = 3/3
    # bigrams: pred {我爱, 爱北京, 北京天安门}, ref {我爱, 爱北京}: overlap 2 -> P = 2/3, R = 2/2
    # LCS = 我 爱 北京 = 3 -> same as unigrams
    s = m.rouge_pair("我爱北京天安门", "我爱北京")
    assert s["rouge1"] == pytest.approx(f1(F(3, 4), F(3, 3)))  # 6/7
    assert s["rouge2"] == pytest.approx(f1(F(2, 3), F(2, 2)))  # 4/5
    assert s["rougeL"] == pytest.approx(f1(F(3, 4), F(3, 3)))
    assert s["rouge1"] == pytest.approx(600 / 7)
    assert s["rouge2"] == pytest.approx(80.0)


def test_rouge_word_level_lcs_by_hand():
    # ref 防止/国有资产/流失, pred 国有资产/流失/防止: same bag of words, LCS = 国有资产 流失 = 2
    assert m.tokenize_words("国有资产流失防止") == ["国有资产", "流失", "防止"]
    s = m.rouge_pair("国有资产流失防止", "防止国有资产流失")
    assert s["rouge1"] == pytest.approx(100.0)
    assert s["rouge2"] == pytest.approx(f1(F(1, 2), F(1, 2)))  # only 国有资产流失 shared
    assert s["rougeL"] == pytest.approx(f1(F(2, 3), F(2, 3)))


def test_rouge_char_level_hand_example():
    # ref 国有资产监督管理 (8 chars), pred 资产管理监督 (6 chars)
    # unigrams: all 6 pred chars in ref -> P = 6/6, R = 6/8
    # bigrams pred {资产, 产管, 管理, 理监, 监督}, ref {国有, 有资, 资产, 产监, 监督, 督管, 管理}: 3 shared
    #   -> P = 3/5, R = 3/7
    # LCS: 资产监督 or 资产管理 = 4 -> P = 4/6, R = 4/8
    s = m.rouge_pair("资产管理监督", "国有资产监督管理", level="char")
    assert s["rouge1"] == pytest.approx(f1(F(1), F(6, 8)))
    assert s["rouge2"] == pytest.approx(f1(F(3, 5), F(3, 7)))
    assert s["rougeL"] == pytest.approx(f1(F(4, 6), F(4, 8)))
    assert s["rouge2"] == pytest.approx(50.0)


def test_repeated_ngrams_are_clipped():
    # pred 国有资产 x3 vs ref 国有资产/流失: unigram overlap min(3,1) = 1 -> P = 1/3, R = 1/2
    s = m.rouge_pair("国有资产国有资产国有资产", "国有资产流失")
    assert m.tokenize_words("国有资产国有资产国有资产") == ["国有资产"] * 3
    assert s["rouge1"] == pytest.approx(f1(F(1, 3), F(1, 2)))


def test_cjk_not_dropped_unlike_rouge_score_default():
    default = rouge_scorer.RougeScorer(["rouge1"]).score("我爱北京", "我爱北京")
    assert default["rouge1"].fmeasure == 0.0  # its tokenizer drops every CJK character
    assert m.rouge_pair("我爱北京", "我爱北京")["rouge1"] == pytest.approx(100.0)


@pytest.mark.parametrize("level", m.LEVELS)
def test_identical_is_100_and_empty_is_0(level):
    s = m.rouge_pair("国务院国有资产监督管理机构履行出资人职责。", "国务院国有资产监督管理机构履行出资人职责。", level)
    assert s == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    for pred in ("", "   ", "，。！"):
        assert m.rouge_pair(pred, "国有资产", level) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert m.rouge_pair("国有资产", "", level) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_rouge_is_mean_of_pairs_and_score_keys():
    preds, refs = ["我爱北京天安门", "国有资产流失防止", ""], ["我爱北京", "防止国有资产流失", "国有资产"]
    pairs = [m.rouge_pair(p, r) for p, r in zip(preds, refs)]
    agg = m.rouge(preds, refs)
    for k in m.ROUGE_TYPES:
        assert agg[k] == pytest.approx(sum(p[k] for p in pairs) / 3)
    assert agg["rouge1"] == pytest.approx((600 / 7 + 100 + 0) / 3)
    s = m.score(preds, refs)
    assert set(s) == {"rouge1", "rouge2", "rougeL", "bleu4", "n"} and s["n"] == 3
    assert s["bleu4"] == pytest.approx(m.bleu4(preds, refs))


def test_bad_inputs():
    with pytest.raises(ValueError, match="2 predictions but 1"):
        m.rouge(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no prediction"):
        m.score([], [])
    with pytest.raises(ValueError, match="level"):
        m.rouge_pair("a", "a", level="sentence")
    with pytest.raises(TypeError, match="prediction 1"):
        m.bleu4(["a", None], ["a", "b"])


# ---------------------------------------------------------------- equality with rouge-score

def test_lcs_length_small_cases():
    assert m.lcs_length("abcbdab", "bdcaba") == 4  # textbook example (CLRS): bcba
    assert m.lcs_length("", "abc") == 0
    assert m.lcs_length("abc", "def") == 0
    assert m.lcs_length("abc", "abc") == 3


def test_lcs_and_f1_equal_rouge_score_on_random_pairs():
    rng = random.Random(0)
    alphabet = [chr(0x4E00 + i) for i in range(6)]  # small alphabet: many matches and repeats
    for _ in range(1500):
        a = [rng.choice(alphabet) for _ in range(rng.randint(0, 70))]
        b = [rng.choice(alphabet) for _ in range(rng.randint(0, 70))]
        table = rouge_scorer._lcs_table(a, b)[-1][-1] if a and b else 0
        assert m.lcs_length(a, b) == table
        assert m._f1_from_tokens(b, a)[2] == rouge_scorer._score_lcs(a, b).fmeasure


def test_rouge_pair_equals_rouge_score_with_our_tokenizer():
    rng = random.Random(1)
    vocab = ["国有资产", "监督", "管理", "企业", "依法", "出资人", "职责", "，", "。", "流失", "防止", "GDP", "2024年", " "]
    for level in m.LEVELS:
        scorer = rouge_scorer.RougeScorer(list(m.ROUGE_TYPES), tokenizer=m.RougeTokenizer(level))
        for _ in range(300):
            pred = "".join(rng.choice(vocab) for _ in range(rng.randint(0, 25)))
            ref = "".join(rng.choice(vocab) for _ in range(rng.randint(1, 25)))
            ours = m.rouge_pair(pred, ref, level)
            theirs = scorer.score(ref, pred)  # rouge-score order: (target, prediction)
            for k in m.ROUGE_TYPES:
                assert ours[k] == 100 * theirs[k].fmeasure, (pred, ref, k)


# ---------------------------------------------------------------- BLEU

def test_bleu_identical_corpus_is_100():
    refs = ["国务院国有资产监督管理机构履行出资人职责。", "防止国有资产流失，GDP增长3.5%。"]
    assert m.bleu4(refs, refs) == pytest.approx(100.0)
    assert m.sentence_bleu4(refs[0], refs[0]) == pytest.approx(100.0)


def test_bleu_by_hand_brevity_penalty():
    # hyp 我爱北京天安门 (7 chars) is a prefix of ref 我爱北京天安门广场 (9 chars): all n-gram precisions are 1,
    # so BLEU = BP = exp(1 - 9/7)
    assert m.bleu4(["我爱北京天安门"], ["我爱北京天安门广场"]) == pytest.approx(100 * math.exp(1 - 9 / 7))


def test_bleu_by_hand_precisions_and_exp_smoothing():
    # hyp 我爱北京天安门 vs ref 我爱上海天安门 (7 chars each, BP = 1)
    # 1-grams 5/7 (我 爱 天 安 门); 2-grams 3/6 (我爱 天安 安门); 3-grams 1/5 (天安门); 4-grams 0/4
    # sacrebleu "exp" smoothing: the first zero order gets 1 / (2 * 4) -> BLEU = (5/7 * 1/2 * 1/5 * 1/8) ** (1/4)
    expected = 100 * float(F(5, 7) * F(1, 2) * F(1, 5) * F(1, 8)) ** 0.25
    assert m.bleu4(["我爱北京天安门"], ["我爱上海天安门"]) == pytest.approx(expected)
    # single pair: sentence BLEU (effective order changes nothing: every order has n-grams) equals corpus BLEU
    assert m.sentence_bleu4("我爱北京天安门", "我爱上海天安门") == pytest.approx(expected)


def test_bleu_equals_sacrebleu_on_pre_split_text():
    hyps = ["我爱北京天安门", "国有资产监督管理", "企业依法经营"]
    refs = ["我爱上海天安门", "国有资产的监督和管理", "国有企业依法自主经营"]
    split = [" ".join(h) for h in hyps], [" ".join(r) for r in refs]
    expected = sacrebleu.corpus_bleu(split[0], [split[1]], tokenize="none").score
    assert m.bleu4(hyps, refs) == pytest.approx(expected)
    # corpus BLEU pools counts; it is not the mean of sentence BLEUs
    mean_sentence = sum(m.sentence_bleu4(h, r) for h, r in zip(hyps, refs)) / 3
    assert m.bleu4(hyps, refs) != pytest.approx(mean_sentence)


def test_sentence_bleu_matches_sacrebleu_defaults():
    for h, r in [("国有资产", "国有资产监督管理委员会"), ("", "国有资产"), ("企业", "企业")]:
        assert m.sentence_bleu4(h, r) == sacrebleu.sentence_bleu(h, [r], tokenize="zh").score


def test_zh_tokens_identical_to_sacrebleu_tokenizer():
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    sacre = TokenizerZh()
    table, _ = m._zh_tables()
    for cp in range(0x10000):  # the translate table spaces exactly sacrebleu's "Chinese" characters
        if TokenizerZh._is_chinese_char.__wrapped__(chr(cp)):
            assert cp in table, hex(cp)
        elif cp >= 128:
            assert cp not in table, hex(cp)
    rng = random.Random(2)
    alphabet = list("国有资产。，、；：“”…—（）《》ＡＢ１２　ａＤＰgdp09.,-'\"!?%&()[]{}/:;@#$ \t\n") + ["\U00020000", "\u2028"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert m.zh_bleu_tokens(text).split() == sacre(text.rstrip()).split(), repr(text)


def test_bleu_equals_sacrebleu_zh_on_random_corpus():
    rng = random.Random(3)
    vocab = ["国有资产", "监督管理", "企业", "依法", "，", "。", "GDP", "增长3.5%", "2024-01-01", "“出资人”", " ", "ok."]
    hyps = ["".join(rng.choice(vocab) for _ in range(rng.randint(0, 12))) for _ in range(200)]
    refs = ["".join(rng.choice(vocab) for _ in range(rng.randint(1, 12))) for _ in range(200)]
    assert m.bleu4(hyps, refs) == sacrebleu.corpus_bleu(hyps, [refs], tokenize="zh").score
    for h, r in zip(hyps[:50], refs[:50]):
        assert m.sentence_bleu4(h, r) == sacrebleu.sentence_bleu(h, [r], tokenize="zh").score


def test_bleu_stats_layout_and_resampling():
    # hyp 我爱北京天安门 vs ref 我爱上海天安门 (counted by hand above): lengths 7/7, correct 5,3,1,0, totals 7,6,5,4
    hyps = ["我爱北京天安门", "国有资产监督管理", "企业依法经营", ""]
    refs = ["我爱上海天安门", "国有资产的监督和管理", "国有企业依法自主经营", "国有资产"]
    stats = m.bleu_stats(hyps, refs)
    assert stats[0] == [7, 7, 5, 3, 1, 0, 7, 6, 5, 4]
    assert stats[3] == [0, 4, 0, 0, 0, 0, 0, 0, 0, 0]
    rng = random.Random(4)
    for _ in range(20):  # a bootstrap resample = sum of its rows
        idx = [rng.randrange(len(hyps)) for _ in hyps]
        expected = sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]], tokenize="zh").score
        assert m.bleu_from_stats([stats[i] for i in idx]) == expected


def test_block_wise_jieba_equals_jieba_lcut():
    import jieba

    def reference(text):
        return [t for t in jieba.lcut(text.lower()) if not m._is_junk(t)]

    rng = random.Random(5)
    alphabet = list("国有资产监督管理企业依法经营北京天安门我爱的了是，。、；：“”！？ \n\tABCgdp2024.5%+#&_-()") + ["第十一条"]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(500)]
    texts += ["根据《中华人民共和国企业国有资产法》第十一条，国务院国有资产监督管理机构代表本级人民政府履行出资人职责。",
              "GDP同比增长5.2%，CPI上涨0.2%——国家统计局（2024年）"]
    for text in texts:
        assert m.tokenize_words(text) == reference(text), repr(text)
