"""Code shared by every function. faas-cli copies this folder into each function's handler folder
(`configuration.copy` in stack.yml), so in the container it is the package `function.common` and
handlers import it as `from .common import ...`. It is also installed (pyproject's packages.find)
as the package `common`, so `sai` (benchmarks, model training) and the tests run the same code.
Modules here import each other relatively only, which keeps both names working.

  request.py       reading requests: body, JSON, multipart, base64, numeric parameters
  errors.py        the JSON error shape, the code list, handler_errors (start-up check, call logging)
  settings.py      the one reader of environment settings
  triton.py        the Triton client: connection per thread, retries, config cache
  imaging.py       image decoding and preprocessing driven by the model config
  classify.py      image bytes -> top-k labels (image-classify, object-classify)
  text_request.py  reading texts from a request
  tokens.py        tokenising for the MiniLM encoder (shared with sai/models/text_encoder.py)
  text.py          the shared text encoder on Triton
  lexicon.py       VADER's lexicon score (text-sentiment only)
"""
