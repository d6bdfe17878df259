"""Pure: the rules, records and computations of the fake, with no HTTP, no store and no clock of their own."""
