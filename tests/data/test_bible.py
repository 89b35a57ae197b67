"""Bible En->Es on tiny fake SWORD modules (tests/helpers/fake_data.py): OSIS parsing, Strong's alignments, splits,
the task."""

import numpy as np
import pytest

from attention_jax import data
from attention_jax.data import alignments
from attention_jax.data import bible
from attention_jax.data import translation
from attention_jax.data import translation_task
from tests.helpers.fake_data import GEN_1_1_EN, GEN_1_1_ES, fake_verses, write_fake_bible

def test_parse_osis_words_and_numbers():
  words, numbers = bible.parse_osis(GEN_1_1_EN)
  assert words == ['In', 'the', 'beginning', 'God', 'created', 'the', 'heaven', 'and', 'the', 'earth.']
  assert numbers[0] == frozenset() and numbers[2] == {'H7225'} and numbers[3] == {'H430'}
  assert numbers[7] == {'H853', 'H776'} and numbers[9] == {'H776'}          # punctuation stays on its word
  words, numbers = bible.parse_osis('<div sID="x"/>¶ <divineName><w lemma="strong:H3068">LORD</w></divineName>, '
                                    'how <transChange type="added">are</transChange> they &amp; me')
  assert words == ['LORD,', 'how', 'are', 'they', '&', 'me'] and numbers[0] == {'H3068'}


def test_word_alignment_links_shared_numbers():
  source_words, source_numbers = bible.parse_osis(GEN_1_1_EN)
  target_words, target_numbers = bible.parse_osis(GEN_1_1_ES)
  assert target_words == ['EN', 'el', 'principio', 'crió', 'Dios', 'los', 'cielos', 'y', 'la', 'tierra.']
  links = bible.word_alignment(target_numbers, source_numbers)
  expected = {(0, 2), (1, 2), (2, 2), (3, 4), (4, 3), (5, 6), (6, 6)} | {(t, s) for t in (7, 8, 9) for s in (7, 9)}
  assert {tuple(x) for x in links.tolist()} == expected and links.dtype == np.int32
  assert bible.verse_example('Gen.1.1', GEN_1_1_EN, '') is None          # an empty side is skipped


@pytest.fixture(scope='module')
def modules(tmp_path_factory):
  english_dir, spanish_dir = write_fake_bible(str(tmp_path_factory.mktemp('sword')))
  return english_dir, spanish_dir, fake_verses()[0]


def test_sword_reader_walks_the_fake_modules_with_pysword(modules):
  english_dir, spanish_dir, english = modules
  read = list(bible.sword_verses(english_dir, spanish_dir, books=['Gen', 'Ruth']))
  nonempty = [v for v in read if v[1]]
  assert len(nonempty) == len(english) == 100
  assert nonempty[0] == ('Gen.1.1', GEN_1_1_EN, GEN_1_1_ES)
  assert [v[0] for v in nonempty][-1] == 'Ruth.4.20'


@pytest.fixture(scope='module')
def built(modules, tmp_path_factory):
  english_dir, spanish_dir, _ = modules
  data_dir = str(tmp_path_factory.mktemp('data'))
  builder = bible.builder(data_dir, lambda: bible.sword_verses(english_dir, spanish_dir, books=['Gen', 'Ruth']))
  builder.download_and_prepare()
  return data_dir, builder


def test_builder_counts_and_chapter_splits(built):
  _, builder = built
  sources = builder.as_data_source()
  counts = {split: len(source) for split, source in sources.items()}
  # Gen 1, Ruth 1 -> train; Gen 18, Ruth 4 -> validation; Gen 2 -> test (md5 of 'Book.chapter').
  assert counts == {'train': 40, 'validation': 40, 'test': 20}
  for split, source in sources.items():                     # whole chapters per split
    chapters = {translation_task.record_text(source[i]['reference']).rsplit('.', 1)[0] for i in range(len(source))}
    assert all(bible.split_of(c + '.1') == split for c in chapters)


def test_unprepared_bible_names_the_command(tmp_path):
  config = data.default_data_config('bible_en_es')
  with pytest.raises(FileNotFoundError, match='python -m experiments.prepare_data --dataset=bible_en_es'):
    translation.make_task(config, data_dir=str(tmp_path))


@pytest.mark.parametrize('tokenizer', ['char', 'sentencepiece'])
def test_bible_task_maps_word_links_onto_tokens(built, tokenizer):
  data_dir, _ = built
  config = data.default_data_config('bible_en_es')
  config.tokenizer, config.vocab_size = tokenizer, 80
  config.max_source_length = config.max_target_length = 200 if tokenizer == 'char' else 80
  task = translation.make_task(config, data_dir=data_dir)
  assert task.has_alignments and task.alignment_unit == 'word'
  split = bible.split_of('Gen.1.1')
  examples = task.examples(split)
  index = [s for s, _ in examples].index('In the beginning God created the heaven and the earth.')
  batch = task.eval_batches(split, batch_size=len(examples))[0]
  alignment = batch['alignment'][index]
  source_ids = batch['source'][index][batch['source'][index] > 0][:-1]          # without EOS
  target_ids = batch['target_out'][index][batch['target_out'][index] > 0][:-1]
  source_text, target_text = examples[index]
  src_members = alignments.token_unit_membership(
      source_text, task.source_tokenizer.encode_with_offsets(source_text)[1], 'word')
  tgt_members = alignments.token_unit_membership(
      target_text, task.target_tokenizer.encode_with_offsets(target_text)[1], 'word')
  assert len(src_members) == len(source_ids) and len(tgt_members) == len(target_ids)
  word_links = {(0, 2), (1, 2), (2, 2), (3, 4), (4, 3), (5, 6), (6, 6)} | {(t, s) for t in (7, 8, 9) for s in (7, 9)}
  for t in range(alignment.shape[0]):
    for s in range(alignment.shape[1]):
      aligned = t < len(tgt_members) and s < len(src_members) and any(
          (tu, su) in word_links for tu in np.flatnonzero(tgt_members[t]) for su in np.flatnonzero(src_members[s]))
      assert alignment[t, s] == float(aligned), (t, s)
  # 'principio' (Spanish word 2) -> 'beginning' (English word 2): every token pair of the two words.
  assert alignment[np.ix_(tgt_members[:, 2], src_members[:, 2])].all() and src_members[:, 2].any()
  assert task.source_tokenizer.decode(batch['source'][index]) == source_text


def test_token_membership_for_sentencepiece_style_spans():
  text = 'el niño  come'
  # Pieces '▁el' (0-2), '▁niñ' (2-7, the space first), 'o' (7-8), '▁' (8-10, spaces only), 'come' (10-14).
  members = alignments.token_unit_membership(text, [(0, 2), (2, 7), (7, 8), (8, 10), (10, 14)], 'word')
  assert members.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]]   # bare '▁' joins the next word
  assert alignments.unit_spans('añb', 'char').tolist() == [[0, 1], [1, 3], [3, 4]]
  assert alignments.unit_spans(' ñu  a ', 'word').tolist() == [[1, 4], [6, 7]]
  # A piece covering two characters covers both units: aligned wherever either is.
  members = alignments.token_unit_membership('abc', [(0, 2), (2, 3)], 'char')
  assert members.tolist() == [[1, 1, 0], [0, 0, 1]]
  gold = alignments.token_alignment(np.array([[0, 1], [1, 2]]), np.eye(2, dtype=bool), members)
  assert gold.tolist() == [[1, 0], [0, 1]]


def test_missing_apt_says_what_to_fetch(tmp_path, monkeypatch):
  from attention_jax.data import debian
  monkeypatch.setattr(debian.shutil, 'which', lambda name: None)
  with pytest.raises(RuntimeError, match=r'apt-get and dpkg-deb are needed to fetch the Bible modules .*'
                                         r'sword-text-kjv=14\.3-1, sword-text-sparv=2\.60-1'):
    bible.prepare(str(tmp_path))
