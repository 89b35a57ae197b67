"""The attention explorer page: its embedded data, and its behaviour in a real (headless Chromium) browser."""

import os
import shutil

import numpy as np
import pytest

from attention_jax import attention_explorer as explorer

SOURCE = ['le', 'chat', '</s>']


def _page(tmp_path, rng=np.random.default_rng(0)):
  """Two sentences; the first with a greedy view and a 2-best beam view with gold links."""
  def weights(t, s):
    w = rng.random((t + 1, s + 2))          # larger than shown: the page crops to the tokens
    return w / w.sum(1, keepdims=True)
  first = [explorer.explorer_hypothesis('greedy', '1', ['the', 'cat', '</s>'], weights(3, 3), source_length=3),
           explorer.explorer_hypothesis('beam2', '1', ['the', 'cat', '</s>'], weights(3, 3), source_length=3,
                                        score=-0.5, gold_TS=np.eye(4, 5)),
           explorer.explorer_hypothesis('beam2', '2', ['a', 'cat', 'here', '</s>'], weights(4, 3), source_length=3,
                                        score=-1.25)]
  second = [explorer.explorer_hypothesis('greedy', '1', ['<b>', '</script>', '</s>'], weights(3, 2), source_length=2)]
  sentences = [explorer.explorer_sentence(SOURCE, first, reference='the cat'),
               explorer.explorer_sentence(['x</script>', '</s>'], second)]
  path = explorer.write_explorer(str(tmp_path / 'sub' / 'explorer.html'), sentences, title='a <test> page',
                                 views=[{'name': 'beam2', 'metrics': {'bleu': 12.5, 'aer': float('nan')}}])
  return path, sentences


def test_page_is_self_contained_and_carries_its_data(tmp_path):
  path, sentences = _page(tmp_path)
  page = open(path, encoding='utf-8').read()
  assert 'http://' not in page and 'https://' not in page and '<script src' not in page and '<link' not in page
  data = explorer.read_explorer_data(path)
  assert data['title'] == 'a <test> page'
  assert [v['name'] for v in data['views']] == ['beam2', 'greedy']        # listed views first, then the others
  assert data['views'][0]['metrics'] == {'bleu': 12.5, 'aer': None}
  assert data['sentences'] == sentences
  assert data['sentences'][1]['source'] == ['x</script>', '</s>']         # survives inside the <script> element
  beam = data['sentences'][0]['hypotheses'][1]
  assert np.shape(beam['weights']) == (3, 3) and beam['gold'] == [[0, 0], [1, 1], [2, 2]]
  assert data['sentences'][0]['hypotheses'][2]['score'] == -1.25


def test_hypothesis_rounds_and_crops_the_weights_and_rejects_too_small_ones():
  weights = np.array([[0.123456, 0.876544, 7.0], [0.5, 0.5, 7.0]])
  record = explorer.explorer_hypothesis('v', '1', ['a', 'b'], weights, source_length=2)
  assert record['weights'] == [[0.1235, 0.8765], [0.5, 0.5]] and record['gold'] is None
  with pytest.raises(ValueError, match=r'must cover \[3 output tokens, 2 source tokens\]'):
    explorer.explorer_hypothesis('v', '1', ['a', 'b', 'c'], weights, source_length=2)


def _browser_or_skip():
  """A headless Chromium driven by selenium, or a skip that says what is missing."""
  try:
    from selenium import webdriver
  except ImportError:
    pytest.skip('selenium is not installed (pip install -r requirements-test.txt)')
  chromium = shutil.which('chromium') or shutil.which('chromium-browser') or shutil.which('google-chrome')
  driver_path = shutil.which('chromedriver')
  if not chromium or not driver_path:
    pytest.skip('no headless browser here: install Debian packages chromium and chromium-driver '
                '(.ci/run does this when it can)')
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for argument in ('--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'):
    options.add_argument(argument)
  return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)


def test_hovering_an_output_token_shows_its_json_weights_in_chromium(tmp_path):
  from selenium.webdriver.common.action_chains import ActionChains
  from selenium.webdriver.common.by import By
  from selenium.webdriver.support.ui import Select
  path, _ = _page(tmp_path)
  data = explorer.read_explorer_data(path)
  browser = _browser_or_skip()
  try:
    browser.get('file://' + os.path.abspath(path))
    assert browser.find_element(By.TAG_NAME, 'body').get_attribute('data-ready') == 'true'
    assert [e.text for e in browser.find_elements(By.CSS_SELECTOR, '.panel h2')] == ['beam2', 'greedy']

    def panel(view):
      return browser.find_element(By.CSS_SELECTOR, f'.panel[data-view="{view}"]')

    def hover_and_read(view, j):
      target = panel(view).find_elements(By.CSS_SELECTOR, '.tgt')[j]
      ActionChains(browser).move_to_element(target).perform()
      sources = panel(view).find_elements(By.CSS_SELECTOR, '.src')
      return ([float(s.get_attribute('data-weight')) for s in sources],
              ['gold' in s.get_attribute('class').split() for s in sources])

    hypotheses = data['sentences'][0]['hypotheses']
    for view, hypothesis in (('greedy', hypotheses[0]), ('beam2', hypotheses[1])):
      for j in range(len(hypothesis['tokens'])):
        shown, gold = hover_and_read(view, j)
        np.testing.assert_allclose(shown, hypothesis['weights'][j], atol=5e-5)
        assert gold == [[j, i] in (hypothesis['gold'] or []) for i in range(3)]
    # The second beam hypothesis: its own tokens and weights.
    panel('beam2').find_elements(By.CSS_SELECTOR, '.hyps button')[1].click()
    assert [e.text for e in panel('beam2').find_elements(By.CSS_SELECTOR, '.tgt')] == ['a', 'cat', 'here', '</s>']
    shown, _ = hover_and_read('beam2', 2)
    np.testing.assert_allclose(shown, hypotheses[2]['weights'][2], atol=5e-5)
    # Another sentence: the markup-like tokens are text, not markup.
    Select(browser.find_element(By.ID, 'sentence')).select_by_value('1')
    assert [e.text for e in panel('greedy').find_elements(By.CSS_SELECTOR, '.tgt')] == ['<b>', '</script>', '</s>']
    shown, _ = hover_and_read('greedy', 1)
    np.testing.assert_allclose(shown, data['sentences'][1]['hypotheses'][0]['weights'][1], atol=5e-5)
    assert browser.find_elements(By.CSS_SELECTOR, '.panel[data-view="beam2"]') == []
    assert 'bleu' in browser.find_element(By.ID, 'metrics').text
  finally:
    browser.quit()
