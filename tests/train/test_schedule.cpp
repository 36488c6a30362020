#include <gtest/gtest.h>

#include "hemoscan/error.hpp"
#include "hemoscan/train/schedule.hpp"

using namespace hemoscan;

TEST(Schedule, CosineWithWarmup) {
    ScheduleOptions o;
    o.kind = ScheduleKind::Cosine;
    o.base_lr = 1.0;
    o.warmup_epochs = 1;
    o.total_epochs = 12;  // cosine spans epochs 1..11 (10 steps)
    o.min_lr_ratio = 0.0;
    LrSchedule s(o);
    EXPECT_DOUBLE_EQ(s.lr(0), 0.1 + 0.9 * 0.5);  // warm-up: halfway from 0.1 to 1
    EXPECT_DOUBLE_EQ(s.lr(1), 1.0);              // cosine start
    EXPECT_NEAR(s.lr(6), 0.5, 1e-12);            // halfway: 0.5 * (1 + cos(pi/2))
    EXPECT_NEAR(s.lr(11), 0.0, 1e-12);           // last epoch: the floor
    for (int e = 2; e <= 11; ++e) EXPECT_LT(s.lr(e), s.lr(e - 1));
}

TEST(Schedule, StepAndPlateau) {
    ScheduleOptions o;
    o.kind = ScheduleKind::Step;
    o.base_lr = 1.0;
    o.warmup_epochs = 0;
    o.step_size = 3;
    o.gamma = 0.1;
    LrSchedule s(o);
    EXPECT_DOUBLE_EQ(s.lr(2), 1.0);
    EXPECT_NEAR(s.lr(3), 0.1, 1e-12);
    EXPECT_NEAR(s.lr(6), 0.01, 1e-12);

    o.kind = ScheduleKind::Plateau;
    o.plateau_patience = 2;
    o.plateau_factor = 0.5;
    LrSchedule p(o);
    p.observe(0.8);
    EXPECT_DOUBLE_EQ(p.lr(1), 1.0);
    p.observe(0.7);
    p.observe(0.79);  // two epochs without improvement -> halve
    EXPECT_DOUBLE_EQ(p.lr(3), 0.5);
    p.observe(0.9);
    EXPECT_DOUBLE_EQ(p.lr(4), 0.5);
    EXPECT_THROW(parse_schedule("linear"), UsageError);
}

TEST(EarlyStop, StopsAfterPatience) {
    EarlyStopping es(2);
    EXPECT_TRUE(es.update(0.5));
    EXPECT_TRUE(es.update(0.6));
    EXPECT_FALSE(es.update(0.6));
    EXPECT_FALSE(es.should_stop());
    EXPECT_FALSE(es.update(0.55));
    EXPECT_TRUE(es.should_stop());
    EXPECT_EQ(es.best_epoch(), 1);
    EXPECT_DOUBLE_EQ(es.best(), 0.6);
    EarlyStopping never(0);
    for (int i = 0; i < 10; ++i) never.update(0.1);
    EXPECT_FALSE(never.should_stop());
}
