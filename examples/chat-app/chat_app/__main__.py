"""Dev command: `python -m chat_app token NAME` prints a bearer token for the demo user NAME
(signed with CHAT_APP_JWT_SECRET, valid for a day)."""
import os
import sys

from . import auth


def main(argv):
    if len(argv) != 2 or argv[0] != "token":
        print("usage: python -m chat_app token NAME", file=sys.stderr)
        return 2
    print(auth.issue(os.environ["CHAT_APP_JWT_SECRET"], argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
