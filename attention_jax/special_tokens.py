"""Special token ids and symbols, defined once for every vocabulary of the project.

Sequence vocabularies (characters, SentencePiece pieces, digit and clothes strips):
  PAD_ID 0   padding; masks come from it and it never gets a loss
  BOS_ID 1   start of the target sequence (teacher forcing and decoding start from it)
  EOS_ID 2   end of sequence
  UNK_ID 3   a token outside the vocabulary
  FIRST_TOKEN_ID 4   the first ordinary token

Word vocabularies without BOS/EOS (sentiment classification): WORD_PAD_ID 0, WORD_UNK_ID 1, words from 2.
This module imports nothing, so the data pipelines and the models both read it without depending on each other.
"""

PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIAL_SYMBOLS = ('<pad>', '<s>', '</s>', '<unk>')   # indexed by id
FIRST_TOKEN_ID = len(SPECIAL_SYMBOLS)

WORD_PAD_ID, WORD_UNK_ID = 0, 1
WORD_SPECIAL_SYMBOLS = ('<pad>', '<unk>')
