import unittest

import logic


class OriginTest(unittest.TestCase):
    def test_listed_origins_only(self):
        allowed = ["https://app.example"]
        self.assertEqual(logic.allowed_origin([("origin", "https://app.example")], allowed), "https://app.example")
        self.assertIsNone(logic.allowed_origin([("origin", "https://evil.example")], allowed))
        self.assertIsNone(logic.allowed_origin([], allowed))


if __name__ == "__main__":
    unittest.main()
