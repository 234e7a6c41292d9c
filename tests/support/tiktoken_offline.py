"""Python tiktoken without network: feed its cache the rank files that the tiktoken-rs crate
ships (byte-identical to OpenAI's). Import this before `import tiktoken`."""
import glob
import hashlib
import os
import shutil
import subprocess

# the repository (this file is tests/support/tiktoken_offline.py); the cache goes to its target/
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# tiktoken caches a blob under sha1(url)
BLOBS = {
    "cl100k_base": "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
    "o200k_base": "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
}


def _assets_dir():
    home = os.environ.get("CARGO_HOME", os.path.expanduser("~/.cargo"))
    found = sorted(glob.glob(os.path.join(home, "registry/src/*/tiktoken-rs-*/assets")))
    if not found:
        # the crate is a dev-dependency: make cargo download it
        subprocess.run(["cargo", "fetch"], cwd=ROOT, check=True)
        found = sorted(glob.glob(os.path.join(home, "registry/src/*/tiktoken-rs-*/assets")))
    if not found:
        raise RuntimeError("tiktoken-rs assets not found in the cargo registry")
    return found[-1]


def setup():
    cache = os.environ.setdefault("TIKTOKEN_CACHE_DIR", os.path.join(ROOT, "target", "tiktoken-cache"))
    os.makedirs(cache, exist_ok=True)
    assets = None
    for name, url in BLOBS.items():
        dest = os.path.join(cache, hashlib.sha1(url.encode()).hexdigest())
        if not os.path.exists(dest):
            assets = assets or _assets_dir()
            shutil.copyfile(os.path.join(assets, f"{name}.tiktoken"), dest)


setup()
