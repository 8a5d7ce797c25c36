import unittest

import logic


class AllowedTest(unittest.TestCase):
    def test_only_the_token(self):
        self.assertTrue(logic.allowed(["Bearer let-me-in"], "let-me-in"))
        self.assertFalse(logic.allowed(["Bearer other"], "let-me-in"))
        self.assertFalse(logic.allowed([], "let-me-in"))


if __name__ == "__main__":
    unittest.main()
