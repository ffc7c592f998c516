"""WikiWeb2M section summarization (task ``wikiweb-gen``): readers, ``prepare``, the loader and the
per-target input assembly of Graph4MM / MMGL (docs/reference-models.md G3, G9).

Sources (``mmbench data prepare wikiweb-gen --from DIR`` detects which one DIR holds)
---------------------------------------------------------------------------------------
* **official** -- WikiWeb2M as google-research-datasets/wit publishes it: gzipped TFRecord
  ``SequenceExample`` files ``wikiweb2m-train.tfrecord.gz-0000{0..4}-of-00005``, ``wikiweb2m-val.tfrecord.gz``,
  ``wikiweb2m-test.tfrecord.gz`` (in DIR, DIR/raw or DIR/wikiweb2m/raw). Read without TensorFlow
  (``mmbench.data.tfrecord``). A page's split is its **official ``split`` context field**, never its position
  (docs/reference-models.md G9.14). ``page_id`` is the running record index over the files in the canonical order train
  shards 00000..00004, val, test (MMGL used ``glob`` order, which is not reproducible). Images are only URLs:
  they are recorded as *missing* unless an image folder in the MMGL naming (below) lies alongside
  (DIR/images, DIR/images_mini, or the same under raw/); such a folder only matches if its page ids were
  assigned in the same file order.
* **mmgl** -- the layout MMGL/Graph4MM's ``wikiweb2m/preprocess_data.py`` writes: one parquet file per split,
  ``wikiweb2m_{train,val,test}_large.parquet`` (Graph4MM's ``*_large_mini.parquet`` accepted too; ``_large``
  wins when both are complete), columns ``page_id, page_url, page_title, page_description, section_title,
  section_depth, section_heading, section_parent_index, section_summary, section_rest_sentence, image_url,
  image_caption`` (the last two flattened section x image arrays, reshaped to ``(sections, -1)``, '' = padding);
  ``section_id_split_large[_mini].pkl`` = ``{split: [(page_id, section_id), ...]}`` marks the summarization
  samples (read with a restricted unpickler); images ``images[_mini]/{page_id}_{section_id}_{image_id}.{ext}``
  with ``ext`` taken from the URL as MMGL does (a file with the same stem and another extension is accepted).
  The split of a page is the parquet file it is in, i.e. MMGL's split by page index (400k/100k/100k pages),
  which is *not* the official split: the manifest notes this.

Sample (``sample_pages``, ``sample_seed`` in the card's ``dataset.params``)
---------------------------------------------------------------------------
Graph4MM "randomly samples 10K pages" and publishes neither the seed nor the list, so mmbench draws and
records its own. Eligible pages: those with at least one section-summarization sample. The 10K pages are
split across train/valid/test in proportion to the eligible pages of each split in the source (largest
remainder; a split with eligible pages gets at least one page); ``sample_pages: 0`` takes every eligible page.
Within a split the sample is uniform without replacement: every eligible page gets the pseudo-random key
``sha256("{seed}:{page_url}")`` (``page:{page_id}`` when the URL is empty) and the pages with the smallest
keys are taken. The draw therefore does not depend on file order, and the official and MMGL sources of the
same pages and splits give the same sample. MANIFEST.json records the page-id lists per split, the sha256 of
each list (``"\\n".join(ids) + "\\n"``, ids in ascending order) and of the matching URL lists, and statistics.

Compact format (``$MMBENCH_DATA/wikiweb-gen/``, version ``mmbench-wikiweb/1``)
------------------------------------------------------------------------------
``pages-{train,valid,test}.jsonl.gz``: one JSON object per page, pages in ascending ``page_id``::

    {"page_id": 17, "url": "...", "title": "...", "description": "...", "split": "valid",
     "sections": [{"title": "...", "depth": 1, "heading_level": 2, "parent": 0,
                   "first_sentence": "...",      # section_clean_1st_sentence: the target
                   "rest": "...",                # section_rest_sentence
                   "sample": true,               # is_section_summarization_sample
                   "images": [{"url": "...", "caption": "...", "status": "found",
                               "file": "17_2_0.jpg"}]}]}

Texts are stored as in the source (whitespace normalised only when the graph is built). ``status`` is
``found`` (file present and decodable by PIL; ``file`` names it under ``images/``), ``missing`` (no file),
``unreadable`` (a file PIL cannot decode; skipped, never fatal), ``unchecked`` (a later image of a section
that already has a usable one: as MMGL's downloader, mmbench keeps the first usable image per section) or
``empty`` (an empty URL inside the list; MMGL's trailing '' padding is dropped). The position of an image in
its section's list is its ``image_id``.
``images/{page_id}_{section_id}_{image_id}.{ext}``: copies (or symlinks with ``--link``) of the used images.
``MANIFEST.json``: source, sampling, statistics, image counters, sha256 of the page files.

Graph (``load_wikiweb``)
------------------------
Per page: a *page* node (text ``title + ", " + description``); one *section* node per section (text = its rest
sentences, target = its first sentence); at most one *image* node per section: its first usable image
(``image`` = the file, ``text`` = the caption). With ``captions_without_image: true`` a section whose images
are all missing gets a caption-only image node (``image`` None) from its first image URL; the default
(false) follows the public code, where a caption enters only with its image. Undirected edges (both
directions stored, duplicates of the same type dropped): page--section for every section (text-text; the
public code links every target to its page), section i -- section i+1 (text-text, page order),
section -- parent section from ``section_parent_index`` (text-text; indices are positions in the page's
section list, out-of-range and self references ignored), section -- its image (text-image), and a chain
over the page's image nodes in section order (image-image). ``groups`` = the page's index in the graph;
``meta["page_ids"]`` maps it to ``page_id``. Split ``train``/``valid``/``test`` = the section nodes that are
summarization samples with a non-empty first sentence (the source calls ``valid`` ``val``). Texts are
whitespace-normalised as in the public code.

Input assembly (``assemble_fn(node) -> GraphSample``, docs/reference-models.md G3 with the G9 fixes)
---------------------------------------------------------------------------------------------------
Model-agnostic: limits are counts of nodes and characters, never tokens.

* ``nodes[0]``: the target section, text = its rest sentences only; the target sentence never appears.
* then the page node, then the target's image node (if any), then the page's other sections in page order,
  each followed by its image node. Other sections carry their full text ``first_sentence + ", " + rest``
  (``first_sentence`` alone when ``rest`` is empty, where the public code leaves a trailing ", "): as in
  the public code their first sentences are context, not answers; they come from the same page, hence the
  same split.
* ``max_text_neighbors`` (11) bounds the neighbours that carry text (page, sections, captions);
  ``max_image_neighbors`` (5) bounds the nodes that carry an image, the target's own image included (the
  public code reserves that slot even when the target has no image; mmbench does not pad). An image node
  that finds no text slot left keeps its image with ``text`` None; a section that finds no text slot is
  left out while its image may still come (as in the public code). Assembly stops when both are used up.
* ``max_node_chars`` (2048, about the 512-token neighbour-text limit of the public code) truncates every text;
  ``max_sample_chars`` (8192) bounds the characters of all texts of a sample, target first. Once it is spent,
  text-only nodes stop and image nodes come without text.
* leak guard (``scrub_target_sentence``, default true; the public code has none): an exact occurrence of the
  whitespace-normalised target sentence inside any neighbour text (e.g. a page description that repeats the
  root section's first sentence) is cut out, so that no node of the sample contains the answer verbatim.
* ``context_targets`` (default ``keep``, the published protocol): the other sections' first sentences are
  context, and since a page lies in one split, on a valid/test page they are the answers of the page's other
  valid/test samples. ``scrub`` drops the first sentence of every valid/test sample section from every
  context and cuts verbatim copies of those sentences out of every neighbour text; the record's protocol
  says which was used.
* edges: those of the page graph among the sample's nodes, indexed exactly as the nodes are stored (no
  +1 shift, G9.1), built from the very node list that is returned, images included (G9.2);
  every index is checked to be < len(nodes). ``hop``: BFS distance from the target in the page graph
  (G9.11), -1 if unreachable.
* sample id: ``"{page_id}_{section_index}"``.
"""

from __future__ import annotations

from mmbench.data.wikiweb_assembly import Assembler  # noqa: F401
from mmbench.data.wikiweb_graph import build_task_data, load_wikiweb, read_pages  # noqa: F401
from mmbench.data.wikiweb_pages import DEFAULTS, FORMAT, PAGE_FILES, Page, Section, SectionImage, params_of  # noqa: F401
from mmbench.data.wikiweb_prepare import prepare, quotas, sample_pages  # noqa: F401
from mmbench.data.wikiweb_sources import (  # noqa: F401
    MMGLSource,
    OfficialSource,
    detect_source,
    official_files,
    read_official_pages,
    read_split_pickle,
)
