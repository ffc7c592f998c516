"""Real English words for the synthetic tasks (so real tokenizers and encoders see real text)."""

TYPE_NOUNS = (
    "river", "city", "painter", "mountain", "novel", "company", "bird", "island", "song", "planet",
    "castle", "engine", "flower", "festival", "bridge", "ship",
)

# One distinctive word per community: concrete nouns and adjectives, no overlap with TYPE_NOUNS.
COMMUNITY_WORDS = tuple("""
amber anchor apple arch arrow autumn bamboo banner barley basket beacon berry blossom boulder bracelet
breeze bronze buckle cabin cactus candle canyon canvas carpet cedar chalk cherry cider cinnamon citrus
clover cobalt comet copper coral cotton crystal cypress daisy dawn delta desert diamond dolphin dragon
dune eagle ember emerald falcon feather fern fig flint forest fountain fox frost garnet ginger glacier
granite grape harbor harvest hazel heather hollow honey horizon ivory jade jasmine juniper kettle lagoon
lantern lava lemon lily linen lotus magnet mango maple marble meadow melon mint mirror mist moss nectar
needle nutmeg oak oasis ocean olive onyx orchard otter owl palm panther pearl pebble pepper pine plum
pollen poppy prairie quartz quill rain raven reef ribbon ripple robin ruby saddle saffron sage sail
salmon sand sapphire satin scarlet shadow shell silk silver slate smoke snow sparrow spice spruce star
stone storm sugar summit sunset swan thistle thunder tide tiger timber topaz tulip tundra velvet violet
walnut willow winter wolf wool zephyr acorn alder aspen badger beetle birch bison bramble brook canary
cascade chestnut clay cloud cobble crane cricket crow dew elm finch fjord flax gale gorge gull hawk heron
holly iris ivy kelp lark lichen lynx marsh mole moth mussel newt oriole osprey peach pecan plover puffin
quail reed rook rowan rye sedge shrimp skylark sloth spring squid stork sumac teal thrush toad trout
tulip umber vale wren yarrow yew zinnia basil bluff caper dahlia ember fennel grove hickory indigo jetty
kestrel laurel lemur loam mallow myrtle nettle orchid parsley pine quince ravine sorrel tansy thyme
""".split())

NOISE_WORDS = tuple("""
the of and a in with from known for its large small old new famous local northern southern eastern western
many several often usually also near by early late great little long short high low bright dark quiet
loud rich poor young ancient modern simple strange common rare open closed warm cold wide narrow
""".split())


def unique_words(words: tuple[str, ...]) -> tuple[str, ...]:
    """Drop repeats, keeping first occurrences in order."""
    seen: set[str] = set()
    return tuple(w for w in words if not (w in seen or seen.add(w)))
